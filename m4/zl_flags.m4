# ZL_CHECK_SANITIZERS: --enable-sanitizers builds everything with ASan + UBSan.
AC_DEFUN([ZL_CHECK_SANITIZERS], [
  AC_ARG_ENABLE([sanitizers],
    [AS_HELP_STRING([--enable-sanitizers], [build with AddressSanitizer and UndefinedBehaviorSanitizer])],
    [], [enable_sanitizers=no])
  ZL_SAN_CFLAGS=
  ZL_SAN_LDFLAGS=
  AS_IF([test "x$enable_sanitizers" = xyes], [
    ZL_SAN_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
    ZL_SAN_LDFLAGS="-fsanitize=address,undefined"
    zl_save_CFLAGS=$CFLAGS; zl_save_LDFLAGS=$LDFLAGS
    CFLAGS="$CFLAGS $ZL_SAN_CFLAGS"; LDFLAGS="$LDFLAGS $ZL_SAN_LDFLAGS"
    AC_MSG_CHECKING([whether $CC supports -fsanitize=address,undefined])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([], [])], [AC_MSG_RESULT([yes])],
      [AC_MSG_RESULT([no]); AC_MSG_ERROR([--enable-sanitizers: $CC cannot build with ASan/UBSan])])
    CFLAGS=$zl_save_CFLAGS; LDFLAGS=$zl_save_LDFLAGS
  ])
  AC_SUBST([ZL_SAN_CFLAGS])
  AC_SUBST([ZL_SAN_LDFLAGS])
])

# ZL_CHECK_WARNINGS: the warning set every component compiles with.
AC_DEFUN([ZL_CHECK_WARNINGS], [
  ZL_WARN_CFLAGS="-std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Wformat=2 -Werror=implicit-function-declaration"
  AC_SUBST([ZL_WARN_CFLAGS])
])
