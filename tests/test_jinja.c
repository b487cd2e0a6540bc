/* Unit tests of the Jinja interpreter behind zlight/chat.h: one snippet per
 * language feature (expected output by transformers' jinja2 environment,
 * fixtures/chat/features.json from tests/gen_chat_fixtures.py), then error
 * messages with line:column, limits, loading and thread safety. */
#include <criterion/criterion.h>
#include <zlight/chat.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FEATURES ZL_TEST_SRCDIR "/fixtures/chat/features.json"

/* Renders src with vars (JSON text or NULL); returns malloc'd output or NULL
 * with the error in zl_last_error(). */
static char *render_vars(const char *src, const char *vars_json, int *rc_out)
{
    struct zl_chat_template *t = NULL;
    int rc = zl_chat_template_compile(src, (size_t)-1, &t);
    char *out = NULL;
    if (rc == 0) {
        json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
        json_t *msgs = json_array();
        struct zl_chat_params p;
        zl_chat_default_params(&p);
        p.messages = msgs;
        p.vars = vars;
        rc = zl_chat_template_render(t, &p, &out);
        json_decref(vars);
        json_decref(msgs);
    }
    zl_chat_template_free(t);
    if (rc_out)
        *rc_out = rc;
    return out;
}

Test(jinja, features_match_jinja2)
{
    json_error_t je;
    json_t *doc = json_load_file(FEATURES, 0, &je);
    cr_assert_not_null(doc, "%s: %s", FEATURES, je.text);
    json_t *ctx = json_object_get(doc, "context");
    size_t i, bad = 0;
    json_t *c;
    json_array_foreach (json_object_get(doc, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *src = json_string_value(json_object_get(c, "template"));
        json_t *want = json_object_get(c, "expected");
        struct zl_chat_template *t = NULL;
        char *out = NULL;
        int rc = zl_chat_template_compile(src, (size_t)-1, &t);
        if (rc == 0) {
            struct zl_chat_params p;
            zl_chat_default_params(&p);
            json_t *msgs = json_array();
            p.messages = msgs;
            p.vars = ctx;
            rc = zl_chat_template_render(t, &p, &out);
            json_decref(msgs);
        }
        if (!want) {
            cr_expect_lt(rc, 0, "%s: jinja2 raised (%s) but we rendered '%s'", name,
                         json_string_value(json_object_get(c, "error")), out ? out : "");
            bad += rc >= 0;
        } else if (rc < 0) {
            cr_expect(0, "%s: %s", name, zl_last_error());
            bad++;
        } else {
            cr_expect_str_eq(out, json_string_value(want), "feature %s:\n got: %s\nwant: %s", name, out,
                             json_string_value(want));
            bad += strcmp(out, json_string_value(want)) != 0;
        }
        free(out);
        zl_chat_template_free(t);
    }
    cr_expect_gt(json_array_size(json_object_get(doc, "cases")), 40);
    cr_log_info("%zu feature mismatches", bad);
    json_decref(doc);
}

/* ---- errors name the line and column -------------------------------------- */

static void expect_error(const char *src, const char *vars, const char *needle)
{
    int rc;
    char *out = render_vars(src, vars, &rc);
    cr_expect_lt(rc, 0, "expected an error for: %s (got '%s')", src, out ? out : "");
    cr_expect(strstr(zl_last_error(), needle) != NULL, "error for %s is '%s', wanted '%s'", src, zl_last_error(),
              needle);
    free(out);
}

/* A compiled template keeps its source (the first len bytes). */
Test(jinja, source_is_kept)
{
    struct zl_chat_template *t;
    cr_assert_eq(zl_chat_template_compile("{{ 1 }}ignored", 7, &t), ZL_OK);
    cr_assert_str_eq(zl_chat_template_source(t), "{{ 1 }}");
    zl_chat_template_free(t);
    cr_assert_null(zl_chat_template_source(NULL));
}

Test(jinja, syntax_errors_have_line_and_column)
{
    expect_error("hello\n  {{ 1 + }}", NULL, "line 2, column 10");
    expect_error("{% if x %}never closed", NULL, "line 1, column 4");
    expect_error("{% for x in %}{% endfor %}", NULL, "line 1, column 13");
    expect_error("ab\ncd {{ 'unterminated }}", NULL, "line 2, column 7");
    expect_error("{% endif %}", NULL, "unexpected 'endif'");
    expect_error("{% frobnicate %}", NULL, "unknown statement 'frobnicate'");
    expect_error("{{ x", NULL, "line 1, column 1");
    expect_error("{# open comment", NULL, "unclosed comment");
    expect_error("{{ a.  }}", NULL, "line 1, column 8");
    expect_error("x {{ 1 $ 2 }}", NULL, "line 1, column 8");
}

Test(jinja, render_errors_have_line_and_column)
{
    expect_error("line1\n{{ raise_exception('Conversation roles must alternate') }}", NULL,
                 "line 2, column 4: Conversation roles must alternate");
    expect_error("{{ nope.attr }}", NULL, "'nope' is undefined");
    expect_error("\n\n   {{ x.strip() }}", NULL, "line 3, column 7");
    expect_error("{{ 'a' + 1 }}", NULL, "unsupported operand type(s) for +: 'str' and 'int'");
    expect_error("{{ 1 // 0 }}", NULL, "division");
    expect_error("{{ 5 | tojson }}{{ undefined_thing | tojson }}", NULL, "not JSON serializable");
    expect_error("{{ 'x' is frob }}", NULL, "no test named 'frob'");
    expect_error("{{ 'x' | frob }}", NULL, "no filter named 'frob'");
    expect_error("{% set d = {'a': 1} %}{% set d.a = 2 %}", NULL, "non-namespace");
    expect_error("{{ 3.method() }}", NULL, "has no attribute 'method'");
    expect_error("{% for a, b in [1] %}{% endfor %}", NULL, "cannot unpack");
    expect_error("{{ 'a' < 1 }}", NULL, "not supported between");
    expect_error("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, "takes not more than 1");
}

Test(jinja, undefined_is_lenient_like_jinja2)
{
    int rc;
    char *out = render_vars("[{{ a }}][{{ a.b is defined if a is defined else 'no' }}][{{ a | length }}]", NULL, &rc);
    cr_assert_eq(rc, 0, "%s", zl_last_error());
    cr_expect_str_eq(out, "[][no][0]");
    free(out);
}

/* ---- limits ------------------------------------------------------------------- */

Test(jinja, recursion_limit)
{
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, "recursion");
}

Test(jinja, step_limit_stops_runaway_loops)
{
    struct zl_chat_template *t;
    cr_assert_eq(zl_chat_template_compile("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                                          "{% endfor %}", (size_t)-1, &t), 0);
    struct zl_chat_params p;
    zl_chat_default_params(&p);
    json_t *msgs = json_array();
    p.messages = msgs;
    p.max_steps = 50000;
    char *out = NULL;
    cr_expect_eq(zl_chat_template_render(t, &p, &out), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "exceeded 50000 evaluation steps") != NULL, "%s", zl_last_error());
    json_decref(msgs);
    zl_chat_template_free(t);
}

Test(jinja, output_limit)
{
    struct zl_chat_template *t;
    cr_assert_eq(zl_chat_template_compile("{% for i in range(1000) %}0123456789{% endfor %}", (size_t)-1, &t), 0);
    struct zl_chat_params p;
    zl_chat_default_params(&p);
    json_t *msgs = json_array();
    p.messages = msgs;
    p.max_output_bytes = 5000;
    char *out = NULL;
    cr_expect_eq(zl_chat_template_render(t, &p, &out), ZL_ERANGE);
    cr_expect_null(out);
    cr_expect(strstr(zl_last_error(), "5000") != NULL, "%s", zl_last_error());
    p.max_output_bytes = 0;
    cr_expect_eq(zl_chat_template_render(t, &p, &out), 0);
    cr_expect_eq(strlen(out), 10000u);
    free(out);
    json_decref(msgs);
    zl_chat_template_free(t);
}

Test(jinja, deep_nesting_is_an_error_not_a_crash)
{
    char src[8192];
    size_t o = 0;
    o += (size_t)sprintf(src + o, "{{ ");
    for (int i = 0; i < 2000; i++)
        src[o++] = '(';
    src[o++] = '1';
    for (int i = 0; i < 2000; i++)
        src[o++] = ')';
    strcpy(src + o, " }}");
    struct zl_chat_template *t = NULL;
    cr_expect_lt(zl_chat_template_compile(src, (size_t)-1, &t), 0);
    cr_expect(strstr(zl_last_error(), "nesting too deep") != NULL, "%s", zl_last_error());
    cr_expect_null(t);
}

/* ---- globals and variables ------------------------------------------------------- */

Test(jinja, strftime_now_and_fixed_date_variable)
{
    int rc;
    char *out = render_vars("{{ strftime_now('%Y') }}", NULL, &rc);
    cr_assert_eq(rc, 0, "%s", zl_last_error());
    char year[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(year, sizeof(year), "%Y", &tm);
    cr_expect_str_eq(out, year);
    free(out);
    /* llama 3.1 style: a date_string variable wins over the clock */
    const char *src = "{%- if not date_string is defined %}{%- set date_string = strftime_now('%d %b %Y') %}"
                      "{%- endif %}Today Date: {{ date_string }}";
    out = render_vars(src, "{\"date_string\": \"26 Jul 2024\"}", &rc);
    cr_assert_eq(rc, 0, "%s", zl_last_error());
    cr_expect_str_eq(out, "Today Date: 26 Jul 2024");
    free(out);
}

Test(jinja, render_variables)
{
    struct zl_chat_template *t;
    const char *src = "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ messages | length }}"
                      "|{{ enable_thinking }}";
    cr_assert_eq(zl_chat_template_compile(src, (size_t)-1, &t), 0);
    cr_assert_eq(zl_chat_template_set_special(t, "<s>", "</s>"), 0);
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \"x\"}]", 0, NULL);
    json_t *vars = json_loads("{\"enable_thinking\": false, \"eos_token\": \"<eos>\"}", 0, NULL);
    struct zl_chat_params p;
    zl_chat_default_params(&p);
    p.messages = msgs;
    p.vars = vars;
    p.add_generation_prompt = true;
    char *out;
    cr_assert_eq(zl_chat_template_render(t, &p, &out), 0, "%s", zl_last_error());
    cr_expect_str_eq(out, "<s>|<eos>|True|None|1|False");
    free(out);
    /* the caller's JSON is not modified by top-level {% set %} */
    zl_chat_template_free(t);
    cr_assert_eq(zl_chat_template_compile("{% set messages = [] %}{% set enable_thinking = 1 %}", (size_t)-1, &t), 0);
    cr_assert_eq(zl_chat_template_render(t, &p, &out), 0);
    free(out);
    cr_expect_eq(json_array_size(msgs), 1u);
    cr_expect(json_is_false(json_object_get(vars, "enable_thinking")));
    zl_chat_template_free(t);
    json_decref(msgs);
    json_decref(vars);
}

/* ---- loading ---------------------------------------------------------------------- */

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/zl-chat-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

static char *render_loaded(struct zl_chat_template *t)
{
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \"hi\"}]", 0, NULL);
    struct zl_chat_params p;
    zl_chat_default_params(&p);
    p.messages = msgs;
    char *out = NULL;
    cr_expect_eq(zl_chat_template_render(t, &p, &out), 0, "%s", zl_last_error());
    json_decref(msgs);
    return out;
}

Test(jinja, load_config_named_templates, .init = make_tmpdir, .fini = rm_tmpdir)
{
    write_file("tokenizer_config.json",
               "{\"bos_token\": {\"content\": \"<B>\", \"lstrip\": false}, \"eos_token\": \"<E>\","
               " \"model_max_length\": 1000000000000000019884624838656,"
               " \"chat_template\": [{\"name\": \"default\", \"template\": \"D{{ bos_token }}{{ messages[0].content }}\"},"
               " {\"name\": \"tool_use\", \"template\": \"T{{ eos_token }}\"}]}");
    char path[256];
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", tmpdir);
    struct zl_chat_template *t;
    cr_assert_eq(zl_chat_template_load_config(path, NULL, &t), 0, "%s", zl_last_error());
    cr_expect_str_eq(zl_chat_template_bos(t), "<B>");
    cr_expect_str_eq(zl_chat_template_eos(t), "<E>");
    char *out = render_loaded(t);
    cr_expect_str_eq(out, "D<B>hi");
    free(out);
    zl_chat_template_free(t);
    cr_assert_eq(zl_chat_template_load_config(path, "tool_use", &t), 0, "%s", zl_last_error());
    out = render_loaded(t);
    cr_expect_str_eq(out, "T<E>");
    free(out);
    zl_chat_template_free(t);
    cr_expect_eq(zl_chat_template_load_config(path, "rag", &t), ZL_ENOTFOUND);
    cr_expect_null(t);
    /* a directory with chat_template.jinja: the file wins, the config gives bos */
    write_file("chat_template.jinja", "J{{ bos_token }}{{ messages[0]['content'] }}\n");
    cr_assert_eq(zl_chat_template_load_dir(tmpdir, NULL, &t), 0, "%s", zl_last_error());
    out = render_loaded(t);
    cr_expect_str_eq(out, "J<B>hi"); /* one trailing newline is dropped, as jinja2 does */
    free(out);
    zl_chat_template_free(t);
}

Test(jinja, load_errors, .init = make_tmpdir, .fini = rm_tmpdir)
{
    struct zl_chat_template *t;
    cr_expect_eq(zl_chat_template_load_file("/nonexistent/chat_template.jinja", &t), ZL_ENOTFOUND);
    write_file("tokenizer_config.json", "{\"bos_token\": \"<s>\"}");
    char path[256];
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", tmpdir);
    cr_expect_eq(zl_chat_template_load_config(path, NULL, &t), ZL_ENOTFOUND);
    cr_expect(strstr(zl_last_error(), "no chat_template") != NULL, "%s", zl_last_error());
    write_file("bad.jinja", "ok\n{% for %}");
    snprintf(path, sizeof(path), "%s/bad.jinja", tmpdir);
    cr_expect_eq(zl_chat_template_load_file(path, &t), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "bad.jinja") && strstr(zl_last_error(), "line 2"), "%s", zl_last_error());
    zl_chat_template_free(NULL);
}

/* ---- one compiled template, many threads ------------------------------------------- */

struct job {
    const struct zl_chat_template *t;
    const json_t *msgs;
    const char *want;
    int bad;
};

static void *render_many(void *arg)
{
    struct job *j = arg;
    struct zl_chat_params p;
    zl_chat_default_params(&p);
    p.messages = j->msgs;
    p.add_generation_prompt = true;
    for (int i = 0; i < 200; i++) {
        char *out = NULL;
        if (zl_chat_template_render(j->t, &p, &out) != 0 || strcmp(out, j->want) != 0)
            j->bad++;
        free(out);
    }
    return NULL;
}

Test(jinja, concurrent_renders)
{
    const char *src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                      "<{{ m.role }}>{{ m.content | trim }}{% endfor %}{{ ns.n }}{% if add_generation_prompt %}<a>{% endif %}";
    struct zl_chat_template *t;
    cr_assert_eq(zl_chat_template_compile(src, (size_t)-1, &t), 0);
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \" x \"}, {\"role\": \"assistant\", \"content\": \"y\"}]",
                              0, NULL);
    struct job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct job){.t = t, .msgs = msgs, .want = "<user>x<assistant>y2<a>"};
        cr_assert_eq(pthread_create(&th[i], NULL, render_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(jobs[i].bad, 0, "thread %d: %d bad renders", i, jobs[i].bad);
    }
    json_decref(msgs);
    zl_chat_template_free(t);
}

/* src renders to want with vars (JSON text or NULL). */
static void expect_output(const char *src, const char *vars, const char *want)
{
    int rc;
    char *out = render_vars(src, vars, &rc);
    cr_expect_eq(rc, 0, "%s: %s", src, zl_last_error());
    cr_expect_str_eq(out ? out : "", want, "%s", src);
    free(out);
}

/* Found by fuzz_jinja: `**` looped once per unit of the exponent, so
 * 1 ** 444444444444444444 never finished.  Python semantics, O(log n). */
Test(jinja, integer_power_is_fast_and_checked, .timeout = 10)
{
    const struct { const char *src, *want; } ok[] = {
        {"{{ 1 ** 444444444444444444 }}", "1"},
        {"{{ (-1) ** 444444444444444445 }}", "-1"},
        {"{{ 0 ** 444444444444444444 }}", "0"},
        {"{{ 2 ** 62 }}", "4611686018427387904"},
        {"{{ 3 ** 5 }}", "243"},
        {"{{ 7 ** 0 }}", "1"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        expect_output(ok[i].src, NULL, ok[i].want);
    expect_error("{{ 2 ** 64 }}", NULL, "integer overflow");
    expect_error("{{ 3 ** 444444444444444444 }}", NULL, "integer overflow");
}

/* Found by fuzz_jinja: repeating an empty list or string skipped the size
 * check and looped once per unit of the count, so `[] * 444044444444444444`
 * never finished.  Python semantics: empty, at once. */
Test(jinja, empty_repetition_is_fast, .timeout = 10)
{
    const struct { const char *src, *want; } ok[] = {
        {"{{ ([] * 444044444444444444)|length }}", "0"},
        {"{{ '' * 444044444444444444 }}|", "|"},
        {"{{ (x|items * 444044444444444444)|length }}", "0"},
        {"{{ ([1, 2] * 3)|length }}", "6"},
        {"{{ 'ab' * 3 }}", "ababab"},
        {"{{ ([1] * -2)|length }}", "0"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        expect_output(ok[i].src, "{\"x\": {}}", ok[i].want);
    expect_error("{{ [1] * 444044444444444444 }}", NULL, "too large");
}

/* Found by fuzz_jinja: `{{ tools * 888888 }}` built str() of an
 * 888888-item list (60 MB) before the output limit saw it, 20 s under
 * ASan.  A string an expression builds now stops at 16 MiB (JJ_MAX_STRING)
 * and the expression fails, naming what built it; str() for output stops
 * at the output limit.  (No criterion .timeout here: with one, criterion's
 * runner leaked 48 bytes of its own in this program under LeakSanitizer.) */
Test(jinja, huge_strings_stop_at_the_limit)
{
    const char *t = "{\"t\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}], \"s\": \"xyz\"}";
    const struct { const char *src, *err; } bad[] = {
        {"{{ t * 888888 }}", "output exceeds"},
        {"{{ (t * 888888)|string|length }}", "string: the result is too large"},
        {"{{ (t * 888888)|tojson|length }}", "tojson: the result is too large"},
        {"{{ (t * 888888)|join('x')|length }}", "join: the result is too large"},
        {"{{ (t * 888888)|e|length }}", "e: the result is too large"},
        {"{{ ('x' * 1000000)|replace('', s * 1000)|length }}", "replace: the result is too large"},
        {"{{ ('x' * 1000000).replace('', s * 1000)|length }}", "replace(): the result is too large"},
        {"{{ '%s'|format(t * 888888) }}", "string formatting: the result is too large"},
        {"{{ '{}'.format(t * 888888)|length }}", "format(): the result is too large"},
        {"{{ ((t * 888888) ~ '')|length }}", "'~': the result is too large"},
        {"{{ ','.join(t * 888888)|length }}", "join(): the result is too large"},
        {"{{ {(t * 888888): 1} }}", "dict key: the result is too large"},
        {"{{ (t * 888888)|lower|length }}", "lower's input: the result is too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_error(bad[i].src, t, bad[i].err);
    /* below the limit, the same expressions are Python's */
    const struct { const char *src, *want; } ok[] = {
        {"{{ [1, 'a'] * 2 }}", "[1, 'a', 1, 'a']"},
        {"{{ ([1, 'a'] * 2)|string|length }}", "16"},
        {"{{ 'ab'|replace('', '-') }}", "-a-b-"},
        {"{{ '-'.join(['a', 1]) }}", "a-1"},
        {"{{ '%s!'|format([1]) }}", "[1]!"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        expect_output(ok[i].src, t, ok[i].want);
}

/* Escapes in string literals are Python's; \U's eight hex digits can
 * spell values past int32 (fuzz_jinja found the overflow), and past the
 * last code point or in the surrogates they are an error. */
Test(jinja, string_escapes)
{
    expect_output("{{ '\\x41\\u00e9\\U0001F600\\n'|length }}", NULL, "4");
    expect_output("{{ '\\x41\\u00e9\\U0001F600' }}", NULL, "A\xc3\xa9\xf0\x9f\x98\x80");
    expect_output("{{ '\\q' }}", NULL, "\\q");
    expect_error("{{ '\\Uffffffff' }}", NULL, "bad code point in string literal");
    expect_error("{{ '\\UbBbBbBbB' }}", NULL, "bad code point in string literal");
    expect_error("{{ '\\U00110000' }}", NULL, "bad code point in string literal");
    expect_error("{{ '\\ud800' }}", NULL, "bad code point in string literal");
    expect_error("{{ '\\x4' }}", NULL, "bad escape in string literal");
}

/* A list or dict literal whose item fails, under `or` (which returned
 * early on a failure and leaked the literal: fuzz_jinja, LeakSanitizer). */
Test(jinja, failed_literals_are_freed)
{
    expect_error("{{ {raw(): 2} or 1 }}", NULL, "'raw' is undefined");
    expect_error("{{ [1, raw()] or 1 }}", NULL, "'raw' is undefined");
    expect_error("{{ {1: raw()} and 1 }}", NULL, "'raw' is undefined");
}
