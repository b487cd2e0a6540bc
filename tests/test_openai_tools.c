/* Tool calls and reasoning in chat replies (plugins/openai/oa-tools.c,
 * oa-reason.c): the readers on finished replies and on streamed prefixes.
 * The HTTP side is in test_openai_http. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "../plugins/openai/oa-impl.h"

/* The calls of `text` as "name(arguments);..." (static buffer), or NULL. */
static const char *calls(enum oa_tools p, const char *text, size_t *content)
{
    static char out[512];
    json_t *c = oa_tools_parse(p, text, strlen(text), content);
    if (!c)
        return NULL;
    size_t n = 0, i;
    json_t *call;
    json_array_foreach(c, i, call) {
        json_t *f = json_object_get(call, "function");
        cr_assert_str_eq(json_string_value(json_object_get(call, "type")), "function");
        cr_assert(!strncmp(json_string_value(json_object_get(call, "id")), "chatcmpl-tool-", 14));
        n += (size_t)snprintf(out + n, sizeof out - n, "%s(%s);",
                              json_string_value(json_object_get(f, "name")),
                              json_string_value(json_object_get(f, "arguments")));
    }
    json_decref(c);
    return out;
}

/* Replies that are no calls: they stay text, all of them content. */
static void expect_text(enum oa_tools p, const char *const *text, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t content;
        cr_expect_null(calls(p, text[i], &content), "%s", text[i]);
        cr_expect_eq(content, strlen(text[i]), "text stays the reply: %s", text[i]);
    }
}

Test(openai_tools, hermes)
{
    size_t content;
    const char *t = "Let me look.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": "
                    "{\"city\": \"Paris\"}}\n</tool_call>";
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, t, &content), "weather({\"city\":\"Paris\"});");
    cr_assert_eq(content, strlen("Let me look.\n"));
    t = "<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"b\","
        "\"arguments\":\"{\\\"x\\\": 1}\"}</tool_call>";
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, t, &content), "a({});b({\"x\": 1});",
                     "a string of arguments is kept as it is");
    cr_assert_eq(content, 0);
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"name\":\"f\",\"arguments\":{\"k\":[1]}}",
                           &content),
                     "f({\"k\":[1]});", "the reply ended before </tool_call>");
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"name\":\"f\"}</tool_call>", &content),
                     "f({});");
    static const char *const text[] = {
        "no call here", "<tool_call>{\"name\": oops}</tool_call>", "<tool_call>[1, 2]</tool_call>",
        "<tool_call>{\"arguments\":{}}</tool_call>", "<tool_call></tool_call>", "",
    };
    expect_text(OA_TOOLS_HERMES, text, sizeof text / sizeof *text);
}

Test(openai_tools, llama3_json)
{
    size_t content;
    cr_assert_str_eq(calls(OA_TOOLS_LLAMA3_JSON,
                           " {\"name\": \"f\", \"parameters\": {\"x\": 1}}\n", &content),
                     "f({\"x\":1});");
    cr_assert_eq(content, 0);
    cr_assert_str_eq(calls(OA_TOOLS_LLAMA3_JSON,
                           "<|python_tag|>{\"name\":\"a\",\"parameters\":{}}; "
                           "{\"name\":\"b\",\"arguments\":{\"y\":\"z\"}}", &content),
                     "a({});b({\"y\":\"z\"});");
    static const char *const text[] = {
        "Hello {\"name\":\"f\",\"parameters\":{}}", "{\"name\":\"f\",\"parameters\":{}} and more",
        "{not json", "{\"parameters\":{}}", "[{\"name\":\"f\"}]", "",
    };
    expect_text(OA_TOOLS_LLAMA3_JSON, text, sizeof text / sizeof *text);
    cr_assert_null(calls(OA_TOOLS_NONE, "{\"name\":\"f\",\"parameters\":{}}", &content));
}

Test(openai_tools, mistral)
{
    size_t content;
    const char *t = "Checking.[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}}, "
                    "{\"name\": \"g\", \"arguments\": {}}]";
    cr_assert_str_eq(calls(OA_TOOLS_MISTRAL, t, &content), "f({\"a\":1});g({});");
    cr_assert_eq(content, strlen("Checking."));
    cr_assert_str_eq(calls(OA_TOOLS_MISTRAL, " [{\"name\": \"f\", \"arguments\": {}}]\n", &content),
                     "f({});", "[TOOL_CALLS] skipped as a special token");
    cr_assert_eq(content, 0);
    static const char *const text[] = {
        "[1, 2, 3]", "[TOOL_CALLS] not json", "[]", "Sure: [{\"name\": \"f\", \"arguments\": {}}]",
        "[{\"name\": \"f\"}] and more",
    };
    expect_text(OA_TOOLS_MISTRAL, text, sizeof text / sizeof *text);
}

Test(openai_tools, deepseek_v3)
{
    size_t content;
    const char *t = "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
                    "weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>"
                    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>time\n```json\n{}\n```"
                    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    cr_assert_str_eq(calls(OA_TOOLS_DEEPSEEK_V3, t, &content),
                     "weather({\"city\":\"Paris\"});time({});");
    cr_assert_eq(content, strlen("Let me check."));
    static const char *const text[] = {
        "plain",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\nnot json\n```"
        "<｜tool▁call▁end｜>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>retrieval<｜tool▁sep｜>f\n```json\n{}\n```"
        "<｜tool▁call▁end｜>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}",
        "<｜tool▁calls▁begin｜>",
    };
    expect_text(OA_TOOLS_DEEPSEEK_V3, text, sizeof text / sizeof *text);
    cr_assert_eq(oa_tools_content_len(OA_TOOLS_DEEPSEEK_V3, "Hi<｜tool", strlen("Hi<｜tool"), 0), 2);
}

/* While streaming: what may begin a call is held back. */
Test(openai_tools, content_streamed_before_a_call)
{
    static const struct {
        enum oa_tools p;
        const char *text;
        int final;
        size_t want;
    } c[] = {
        {OA_TOOLS_HERMES, "abc", 0, 3},
        {OA_TOOLS_HERMES, "abc<", 0, 3},
        {OA_TOOLS_HERMES, "abc<tool_", 0, 3},
        {OA_TOOLS_HERMES, "abc<tool_", 1, 9},
        {OA_TOOLS_HERMES, "abc<tool_call>{\"na", 0, 3},
        {OA_TOOLS_HERMES, "a < b", 0, 5},
        {OA_TOOLS_LLAMA3_JSON, "", 0, 0},
        {OA_TOOLS_LLAMA3_JSON, "  ", 0, 0},
        {OA_TOOLS_LLAMA3_JSON, " {\"name", 0, 0},
        {OA_TOOLS_LLAMA3_JSON, "<|pyth", 0, 0},
        {OA_TOOLS_LLAMA3_JSON, "Sure", 0, 4},
        {OA_TOOLS_LLAMA3_JSON, "{\"name", 1, 6},
        {OA_TOOLS_MISTRAL, "Hi[TOOL_CALLS][{", 0, 2},
        {OA_TOOLS_MISTRAL, "Hi[TOOL_", 0, 2},
        {OA_TOOLS_MISTRAL, " [{\"na", 0, 0},
        {OA_TOOLS_MISTRAL, "Sure", 0, 4},
        {OA_TOOLS_MISTRAL, "[1]", 1, 3},
        {OA_TOOLS_NONE, "<tool_", 0, 6},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        cr_expect_eq(oa_tools_content_len(c[i].p, c[i].text, strlen(c[i].text), c[i].final),
                     c[i].want, "case %zu: '%s'", i, c[i].text);
}

Test(openai_tools, parser_names)
{
    enum oa_tools p;
    cr_assert_eq(oa_tools_parser("hermes", &p), 0);
    cr_assert_eq(p, OA_TOOLS_HERMES);
    cr_assert_eq(oa_tools_parser("llama3_json", &p), 0);
    cr_assert_eq(p, OA_TOOLS_LLAMA3_JSON);
    cr_assert_eq(oa_tools_parser(NULL, &p), 0);
    cr_assert_eq(p, OA_TOOLS_NONE);
    cr_assert_eq(oa_tools_parser("mistral", &p), 0);
    cr_assert_eq(p, OA_TOOLS_MISTRAL);
    cr_assert_eq(oa_tools_parser("pythonic", &p), -1);
}

/* Reasoning split: [r_off, r_end) reasoning, content from c_off. */
Test(openai_tools, reasoning_split)
{
    static const struct {
        enum oa_reason p;
        const char *text;
        int final;
        size_t r_off, r_end, c_off;
    } c[] = {
        /* qwen3: only a reply that opens with <think> reasons */
        {OA_REASON_QWEN3, "<think>\nhm\n</think>\n\nAnswer.", 1, 7, 11, 19},
        {OA_REASON_QWEN3, "Answer.", 1, 0, 0, 0},
        {OA_REASON_QWEN3, "\n<think>hm", 1, 8, 10, 10},
        {OA_REASON_QWEN3, "<thi", 0, 0, 0, 4},
        {OA_REASON_QWEN3, "<thi", 1, 0, 0, 0},
        {OA_REASON_QWEN3, "<think>hm</thi", 0, 7, 9, 14},
        {OA_REASON_QWEN3, "<think>hm</thi", 1, 7, 14, 14},
        /* deepseek_r1: reasoning from the start up to </think> */
        {OA_REASON_DEEPSEEK_R1, "hm\n</think>\n\nAnswer.", 1, 0, 3, 11},
        {OA_REASON_DEEPSEEK_R1, "<think>hm</think>A", 1, 7, 9, 17},
        {OA_REASON_DEEPSEEK_R1, "still thinking", 1, 0, 14, 14},
        {OA_REASON_DEEPSEEK_R1, "still </", 0, 0, 6, 8},
        {OA_REASON_NONE, "<think>hm</think>A", 1, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        struct oa_split sp;
        oa_reason_split(c[i].p, c[i].text, strlen(c[i].text), c[i].final, &sp);
        cr_expect(sp.r_off == c[i].r_off && sp.r_end == c[i].r_end && sp.c_off == c[i].c_off,
                  "case %zu '%s': %zu %zu %zu", i, c[i].text, sp.r_off, sp.r_end, sp.c_off);
    }
    enum oa_reason p;
    cr_assert_eq(oa_reason_parser("qwen3", &p), 0);
    cr_assert_eq(p, OA_REASON_QWEN3);
    cr_assert_eq(oa_reason_parser("deepseek_r1", &p), 0);
    cr_assert_eq(oa_reason_parser(NULL, &p), 0);
    cr_assert_eq(p, OA_REASON_NONE);
    cr_assert_eq(oa_reason_parser("granite", &p), -1);
}
