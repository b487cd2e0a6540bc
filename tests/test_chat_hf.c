/* Chat renders against transformers' apply_chat_template: every case of
 * fixtures/chat/cases.json (made by tests/gen_chat_fixtures.py) rendered by
 * the real templates of ../shared/tokenizers and SmolLM2's fixture. */
#include <criterion/criterion.h>
#include <zlight/chat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CASES ZL_TEST_SRCDIR "/fixtures/chat/cases.json"
#define SHARED ZL_TOP_SRCDIR "/../shared/tokenizers"

static json_t *load_cases(void)
{
    json_error_t je;
    json_t *doc = json_load_file(CASES, 0, &je);
    cr_assert_not_null(doc, "%s: %s", CASES, je.text);
    return doc;
}

/* Loads template `name` the way a user would: tokenizer_config.json for the
 * shared families, the .jinja fixture plus its bos/eos for SmolLM2. */
static struct zl_chat_template *load_template(json_t *doc, const char *name)
{
    json_t *info = json_object_get(json_object_get(doc, "templates"), name);
    cr_assert_not_null(info, "no template %s in cases.json", name);
    struct zl_chat_template *t = NULL;
    char path[1024];
    if (!strcmp(json_string_value(json_object_get(info, "source")), "shared")) {
        snprintf(path, sizeof(path), "%s/%s/tokenizer_config.json", SHARED, name);
        if (access(path, R_OK) != 0)
            cr_skip_test("%s not found: the real tokenizer files (../shared/tokenizers) are missing", path);
        cr_assert_eq(zl_chat_template_load_config(path, NULL, &t), 0, "%s", zl_last_error());
    } else {
        snprintf(path, sizeof(path), "%s/fixtures/chat/%s.jinja", ZL_TEST_SRCDIR, name);
        cr_assert_eq(zl_chat_template_load_file(path, &t), 0, "%s", zl_last_error());
        json_t *bos = json_object_get(info, "bos_token"), *eos = json_object_get(info, "eos_token");
        cr_assert_eq(zl_chat_template_set_special(t, json_string_value(bos), json_string_value(eos)), 0);
    }
    const char *bos = json_string_value(json_object_get(info, "bos_token"));
    if (bos)
        cr_assert_str_eq(zl_chat_template_bos(t), bos);
    return t;
}

static void run_family(const char *name)
{
    json_t *doc = load_cases();
    struct zl_chat_template *t = load_template(doc, name);
    json_t *convs = json_object_get(doc, "conversations"), *tools = json_object_get(doc, "tools");
    size_t i, n = 0, bad = 0;
    json_t *c;
    json_array_foreach (json_object_get(doc, "cases"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "template")), name) != 0)
            continue;
        n++;
        const char *conv = json_string_value(json_object_get(c, "conversation"));
        json_t *tk = json_object_get(c, "tools");
        struct zl_chat_params p;
        zl_chat_default_params(&p);
        p.messages = json_object_get(convs, conv);
        p.tools = json_is_string(tk) ? json_object_get(tools, json_string_value(tk)) : NULL;
        p.add_generation_prompt = json_is_true(json_object_get(c, "add_generation_prompt"));
        p.vars = json_object_get(c, "vars");
        char *out = NULL;
        int rc = zl_chat_template_render(t, &p, &out);
        json_t *want = json_object_get(c, "expected");
        char *vars = json_dumps(p.vars, JSON_COMPACT);
        if (!want) {
            cr_expect_lt(rc, 0, "%s/%s agp=%d %s: transformers raised (%s) but we rendered", name, conv,
                         p.add_generation_prompt, vars, json_string_value(json_object_get(c, "error")));
            bad += rc >= 0;
        } else if (rc < 0) {
            cr_expect(0, "%s/%s agp=%d %s: %s", name, conv, p.add_generation_prompt, vars, zl_last_error());
            bad++;
        } else if (strcmp(out, json_string_value(want)) != 0) {
            cr_expect_str_eq(out, json_string_value(want), "%s/%s tools=%s agp=%d %s:\n got: %s\nwant: %s", name,
                             conv, json_is_string(tk) ? json_string_value(tk) : "none", p.add_generation_prompt, vars,
                             out, json_string_value(want));
            bad++;
        }
        free(vars);
        free(out);
    }
    cr_expect_gt(n, 10, "too few cases for %s", name);
    cr_log_info("%s: %zu cases, %zu mismatches", name, n, bad);
    zl_chat_template_free(t);
    json_decref(doc);
}

Test(chat_hf, llama3) { run_family("llama3"); }
Test(chat_hf, llama3_1) { run_family("llama3_1"); }
Test(chat_hf, qwen3) { run_family("qwen3"); }
Test(chat_hf, deepseek_v3) { run_family("deepseek_v3"); }
Test(chat_hf, smollm2) { run_family("smollm2"); }

/* Every config in ../shared/tokenizers that has a chat template must be in
 * the fixtures, so a new family cannot slip by untested. */
Test(chat_hf, all_shared_templates_covered)
{
    static const char *const fams[] = {"llama2", "llama3", "llama3_1", "qwen3", "deepseek_v3"};
    json_t *doc = load_cases();
    json_t *known = json_object_get(doc, "templates");
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s/tokenizer_config.json", SHARED, fams[i]);
        if (access(path, R_OK) != 0)
            cr_skip_test("%s not found: the real tokenizer files (../shared/tokenizers) are missing", path);
        struct zl_chat_template *t = NULL;
        int rc = zl_chat_template_load_config(path, NULL, &t);
        if (rc == 0)
            cr_expect_not_null(json_object_get(known, fams[i]), "%s has a template but no fixtures", fams[i]);
        else
            cr_expect_eq(rc, ZL_ENOTFOUND, "%s: %s", fams[i], zl_last_error());
        zl_chat_template_free(t);
    }
    json_decref(doc);
}
