# ZL_CHECK_CUDA
# --with-cuda[=DIR]: yes/DIR  -> CUDA required, fail clearly when missing
#                    no       -> build without CUDA
#                    (unset)  -> detect nvcc (PATH, then /usr/local/cuda); use it if found
# --with-cuda-arch=LIST: comma-separated sm_XX list (default sm_80,sm_89,sm_90a)
# Sets NVCC, CUDA_CPPFLAGS, CUDA_LIBS, NVCC_GENCODE; AM_CONDITIONAL HAVE_CUDA.
AC_DEFUN([ZL_CHECK_CUDA], [
  AC_ARG_WITH([cuda],
    [AS_HELP_STRING([--with-cuda@<:@=DIR@:>@], [build the CUDA backend (default: if nvcc is found)])],
    [], [with_cuda=check])
  AC_ARG_WITH([cuda-arch],
    [AS_HELP_STRING([--with-cuda-arch=LIST], [GPU architectures, comma separated (default: sm_80,sm_89,sm_90a)])],
    [], [with_cuda_arch=sm_80,sm_89,sm_90a])

  zl_have_cuda=no
  NVCC=
  AS_CASE([$with_cuda],
    [no], [],
    [yes|check], [
      AC_PATH_PROG([NVCC], [nvcc], [], [$PATH:/usr/local/cuda/bin])],
    [
      AS_IF([test -x "$with_cuda/bin/nvcc"], [NVCC="$with_cuda/bin/nvcc"])])

  AS_IF([test -n "$NVCC"], [
    zl_cuda_home=`AS_DIRNAME(["$NVCC"])`
    zl_cuda_home=`AS_DIRNAME(["$zl_cuda_home"])`
    CUDA_CPPFLAGS="-I$zl_cuda_home/include"
    AS_IF([test -d "$zl_cuda_home/lib64"], [zl_cuda_libdir="$zl_cuda_home/lib64"], [zl_cuda_libdir="$zl_cuda_home/lib"])
    CUDA_LIBS="-L$zl_cuda_libdir -Wl,-rpath,$zl_cuda_libdir -lcudart"
    zl_save_CPPFLAGS=$CPPFLAGS
    CPPFLAGS="$CPPFLAGS $CUDA_CPPFLAGS"
    AC_CHECK_HEADER([cuda_runtime_api.h], [zl_have_cuda=yes], [zl_have_cuda=no])
    CPPFLAGS=$zl_save_CPPFLAGS
    AS_IF([test "x$zl_have_cuda" = xyes], [
      zl_save_LIBS=$LIBS
      LIBS="$LIBS $CUDA_LIBS"
      AC_MSG_CHECKING([for cudaGetDeviceCount in -lcudart])
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cuda_runtime_api.h>]], [[int n; return (int)cudaGetDeviceCount(&n);]])],
        [AC_MSG_RESULT([yes])], [AC_MSG_RESULT([no]); zl_have_cuda=no])
      LIBS=$zl_save_LIBS
      CPPFLAGS=$zl_save_CPPFLAGS])
  ])

  AS_IF([test "x$zl_have_cuda" = xno], [
    AS_CASE([$with_cuda],
      [no|check], [AS_IF([test "x$with_cuda" = xcheck], [AC_MSG_NOTICE([CUDA toolkit not found: building without the CUDA backend])])],
      [AC_MSG_ERROR([--with-cuda was given but no usable CUDA toolkit was found (looked for nvcc in ${with_cuda/yes/PATH and /usr/local/cuda}; need nvcc, cuda_runtime_api.h and libcudart). Install the CUDA Toolkit or pass --with-cuda=DIR.])])
    NVCC= CUDA_CPPFLAGS= CUDA_LIBS=
  ])

  NVCC_GENCODE=
  ZL_CUDA_ARCHS=
  AS_IF([test "x$zl_have_cuda" = xyes], [
    for zl_arch in `echo "$with_cuda_arch" | tr ',' ' '`; do
      AS_CASE([$zl_arch],
        [sm_[[0-9]][[0-9]]|sm_[[0-9]][[0-9]]a|sm_[[0-9]][[0-9]][[0-9]]|sm_[[0-9]][[0-9]][[0-9]]a], [],
        [AC_MSG_ERROR([--with-cuda-arch: '$zl_arch' is not of the form sm_XX or sm_XXa])])
      zl_num=`echo "$zl_arch" | sed 's/^sm_//'`
      NVCC_GENCODE="$NVCC_GENCODE -gencode=arch=compute_$zl_num,code=sm_$zl_num"
      ZL_CUDA_ARCHS="$ZL_CUDA_ARCHS $zl_arch"
      AS_IF([test "x$zl_arch" = xsm_90a],
        [AC_DEFINE([ZL_CUDA_SM90A], [1], [Define if the CUDA kernels are built for sm_90a (wgmma, TMA)])])
    done
  ])
  AC_SUBST([NVCC])
  AC_SUBST([CUDA_CPPFLAGS])
  AC_SUBST([CUDA_LIBS])
  AC_SUBST([NVCC_GENCODE])
  AC_SUBST([ZL_CUDA_ARCHS])
  AM_CONDITIONAL([HAVE_CUDA], [test "x$zl_have_cuda" = xyes])
  AS_IF([test "x$zl_have_cuda" = xyes], [AC_DEFINE([ZL_HAVE_CUDA], [1], [Define if the CUDA backend is built])])
])
