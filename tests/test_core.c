/* Status codes, the thread-local error message and logging. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include <zlight/zlight.h>

Test(status, names_and_messages)
{
    cr_assert_str_eq(zl_status_str(ZL_OK), "OK");
    cr_assert_str_eq(zl_status_str(ZL_EABI), "EABI");
    cr_assert_str_eq(zl_status_str(12345), "unknown");
    cr_assert_eq(zl_error(ZL_EINVAL, "bad %s at %d", "key", 3), ZL_EINVAL);
    cr_assert_str_eq(zl_last_error(), "bad key at 3");
    cr_assert_eq(zl_error_wrap(ZL_EIO, "loading %s", "a.yaml"), ZL_EIO);
    cr_assert_str_eq(zl_last_error(), "loading a.yaml: bad key at 3");
    zl_clear_error();
    cr_assert_str_eq(zl_last_error(), "");
    zl_error_wrap(ZL_EIO, "only context");
    cr_assert_str_eq(zl_last_error(), "only context");
}

Test(status, long_messages_are_cut_not_overflowed)
{
    char big[4096];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    zl_error(ZL_EINVAL, "%s", big);
    cr_assert_lt(strlen(zl_last_error()), sizeof big);
    zl_error_wrap(ZL_EINVAL, "%s", big);
    cr_assert_lt(strlen(zl_last_error()), sizeof big);
}

static void *other_thread(void *arg)
{
    (void)arg;
    zl_error(ZL_ENOMEM, "from the other thread");
    return NULL;
}

Test(status, message_is_per_thread)
{
    pthread_t t;
    zl_error(ZL_EINVAL, "mine");
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, NULL);
    cr_assert_str_eq(zl_last_error(), "mine");
}

static char captured[8][256];
static int n_captured;

static void sink(enum zl_log_level level, const char *line, void *user)
{
    (void)level;
    (void)user;
    if (n_captured < 8)
        snprintf(captured[n_captured++], sizeof captured[0], "%s", line);
}

Test(log, levels_filter_and_lines_carry_time_level_and_who)
{
    n_captured = 0;
    zl_log_set_sink(sink, NULL);
    zl_log_set_level(ZL_LOG_INFO);
    ZL_DEBUG("test", "dropped %d", 1);
    zl_log(ZL_LOG_INFO, "test", "kept %d", 2);
    ZL_WARN("test", "kept too");
    zl_log_set_sink(NULL, NULL);
    cr_assert_eq(n_captured, 2);
    /* 2026-11-24T20:31:07.123Z info  test: kept 2 */
    cr_assert_eq(strlen(captured[0]) > 25 && captured[0][4] == '-' && captured[0][10] == 'T', 1,
                 "no timestamp: %s", captured[0]);
    cr_assert(strstr(captured[0], "Z info  test: kept 2"), "%s", captured[0]);
    cr_assert(strstr(captured[1], "warn  test: kept too"), "%s", captured[1]);
}

Test(log, level_names_parse)
{
    enum zl_log_level lv;
    cr_assert_eq(zl_log_level_parse("DEBUG", &lv), ZL_OK);
    cr_assert_eq(lv, ZL_LOG_DEBUG);
    cr_assert_eq(zl_log_level_parse("warning", &lv), ZL_OK);
    cr_assert_eq(lv, ZL_LOG_WARN);
    cr_assert_eq(zl_log_level_parse("loud", &lv), ZL_EINVAL);
    cr_assert(strstr(zl_last_error(), "'loud'"));
    cr_assert_str_eq(zl_log_level_name(ZL_LOG_TRACE), "trace");
}

Test(version, matches_the_package)
{
    cr_assert_str_eq(zl_version(), PACKAGE_VERSION_FOR_TEST);
}
