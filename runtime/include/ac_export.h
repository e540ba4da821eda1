/* Symbol visibility: the library is built with -fvisibility=hidden and only
 * what is marked AC_EXPORT is part of the public ABI. */
#ifndef AC_EXPORT_H
#define AC_EXPORT_H

#if defined(__GNUC__) && defined(AC_BUILDING)
#define AC_EXPORT __attribute__((visibility("default")))
#else
#define AC_EXPORT
#endif

#endif
