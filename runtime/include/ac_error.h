/* Error codes of the async-cache core.
 *
 * Every fallible call returns 0 or a negative AC_E* code; ac_strerror() gives
 * a sentence, ac_err_name() the symbol.  The list is one X-macro so the enum
 * and both lookups can never drift apart. */
#ifndef AC_ERROR_H
#define AC_ERROR_H

#include "ac_export.h"

#define AC_ERRNO_MAP(XX)                                                      \
  XX(ENOMEM, -1, "out of memory")                                             \
  XX(EINVAL, -2, "invalid argument")                                          \
  XX(ENOENT, -3, "no such entry")                                             \
  XX(ETIMEDOUT, -4, "timed out")                                              \
  XX(ECANCELED, -5, "operation canceled")                                     \
  XX(EBUSY, -6, "resource busy")                                              \
  XX(ECLOSED, -7, "object is closed")                                         \
  XX(ELOAD, -8, "loader failed")                                              \
  XX(EIO, -9, "input/output error")                                          \
  XX(EFORMAT, -10, "malformed or unsupported data")

typedef enum {
#define AC_ERR_ENUM(name, code, msg) AC_##name = (code),
  AC_ERRNO_MAP(AC_ERR_ENUM)
#undef AC_ERR_ENUM
  AC_ELAST_ = -11
} ac_errno_t;

/* Both return static strings; unknown codes give "unknown error". */
AC_EXPORT const char *ac_strerror(int err);
AC_EXPORT const char *ac_err_name(int err);

#endif
