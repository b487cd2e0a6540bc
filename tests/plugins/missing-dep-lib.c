/* A library the "missingdep" test plugin links against and that is then
 * absent at run time, so dlopen() fails with the loader's reason. */
int zl_test_missing_dep(void);
int zl_test_missing_dep(void) { return 42; }
