/* ac_strerror / ac_err_name, generated from AC_ERRNO_MAP. */
#include "ac_error.h"

const char *ac_strerror(int err) {
  switch (err) {
#define AC_ERR_MSG(name, code, msg) \
  case code:                        \
    return msg;
    AC_ERRNO_MAP(AC_ERR_MSG)
#undef AC_ERR_MSG
    default:
      return "unknown error";
  }
}

const char *ac_err_name(int err) {
  switch (err) {
#define AC_ERR_NAME(name, code, msg) \
  case code:                         \
    return "AC_" #name;
    AC_ERRNO_MAP(AC_ERR_NAME)
#undef AC_ERR_NAME
    default:
      return "AC_EUNKNOWN";
  }
}
