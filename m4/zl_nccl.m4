# ZL_CHECK_NCCL
# --with-nccl[=DIR]: required / at DIR; --without-nccl: off; unset: detect
# next to the CUDA toolkit and in the system paths.  Needs CUDA.
# Sets NCCL_CPPFLAGS, NCCL_LIBS; AM_CONDITIONAL HAVE_NCCL.
AC_DEFUN([ZL_CHECK_NCCL], [
  AC_REQUIRE([ZL_CHECK_CUDA])
  AC_ARG_WITH([nccl],
    [AS_HELP_STRING([--with-nccl@<:@=DIR@:>@], [build the NCCL communicator (default: if found)])],
    [], [with_nccl=check])
  zl_have_nccl=no
  NCCL_CPPFLAGS=
  NCCL_LIBS=
  AS_IF([test "x$with_nccl" != xno], [
    AS_IF([test "x$zl_have_cuda" != xyes], [
      AS_IF([test "x$with_nccl" != xcheck], [AC_MSG_ERROR([--with-nccl needs the CUDA toolkit (see --with-cuda)])])
    ], [
      AS_CASE([$with_nccl],
        [yes|check], [zl_nccl_dirs="$zl_cuda_home /usr"],
        [zl_nccl_dirs="$with_nccl"])
      for zl_d in $zl_nccl_dirs; do
        AS_IF([test -f "$zl_d/include/nccl.h"], [
          NCCL_CPPFLAGS="-I$zl_d/include"
          AS_IF([test -d "$zl_d/lib64"], [zl_l="$zl_d/lib64"], [zl_l="$zl_d/lib"])
          NCCL_LIBS="-L$zl_l -Wl,-rpath,$zl_l -lnccl"
          break])
      done
      zl_save_CPPFLAGS=$CPPFLAGS; zl_save_LIBS=$LIBS
      CPPFLAGS="$CPPFLAGS $CUDA_CPPFLAGS $NCCL_CPPFLAGS"
      LIBS="$LIBS $NCCL_LIBS $CUDA_LIBS"
      AC_MSG_CHECKING([for ncclGetVersion])
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <nccl.h>]], [[int v; return (int)ncclGetVersion(&v);]])],
        [AC_MSG_RESULT([yes]); zl_have_nccl=yes], [AC_MSG_RESULT([no])])
      CPPFLAGS=$zl_save_CPPFLAGS; LIBS=$zl_save_LIBS
      AS_IF([test "x$zl_have_nccl" = xno && test "x$with_nccl" != xcheck],
        [AC_MSG_ERROR([--with-nccl was given but nccl.h / libnccl were not found in: $zl_nccl_dirs])])
    ])
  ])
  AS_IF([test "x$zl_have_nccl" = xno], [NCCL_CPPFLAGS= NCCL_LIBS=])
  AC_SUBST([NCCL_CPPFLAGS])
  AC_SUBST([NCCL_LIBS])
  AM_CONDITIONAL([HAVE_NCCL], [test "x$zl_have_nccl" = xyes])
])
