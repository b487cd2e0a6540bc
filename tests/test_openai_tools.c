/* Tool calls and reasoning in chat replies (plugins/openai/oa-tools.c,
 * oa-reason.c): the readers on finished replies and on streamed prefixes.
 * The HTTP side is in test_openai_http. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../plugins/openai/oa-impl.h"

/* The calls of the finished reply `text` as "name(arguments);..." (static
 * buffer), or NULL; *content: the content's length. */
static const char *calls(enum oa_tools p, const char *text, size_t *content)
{
    static char out[1024];
    struct oa_calls c;
    oa_tools_read(p, text, strlen(text), 1, &c);
    *content = c.content_len;
    size_t n = 0;
    for (size_t i = 0; i < c.n; i++)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s(%.*s);", c.call[i].name,
                              (int)c.call[i].args_len, c.call[i].args);
    size_t k = c.n;
    oa_calls_free(&c);
    return k ? out : NULL;
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
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, t, &content), "weather({\"city\": \"Paris\"});",
                     "the arguments as the model wrote them");
    cr_assert_eq(content, strlen("Let me look.\n"));
    t = "<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"b\","
        "\"arguments\":\"{\\\"x\\\": 1}\"}</tool_call>";
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, t, &content), "a({});b({\"x\": 1});",
                     "a string of arguments is its value");
    cr_assert_eq(content, 0);
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"name\":\"f\",\"arguments\":{\"k\":[1]}}",
                           &content),
                     "f({\"k\":[1]});", "the reply ended before </tool_call>");
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"name\":\"f\"}</tool_call>", &content),
                     "f({});");
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"arguments\": {\"a\": 1}, \"id\": [1, "
                                            "{\"x\": null}], \"name\": \"f\"}", &content),
                     "f({\"a\": 1});", "any order, other members skipped");
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": null}",
                           &content), "f({});");
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": "
                                            "{\"s\": \"</tool_call>\"}}</tool_call>", &content),
                     "f({\"s\": \"</tool_call>\"});", "the object is read, not cut at a tag");
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": "
                                            "1}, \"arguments\": {}, \"name\": \"g\"}", &content),
                     "f({\"a\": 1});", "the first of a key counts");
    /* once its name and the start of its arguments are out, a call stays one */
    cr_assert_str_eq(calls(OA_TOOLS_HERMES,
                           "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [1, \"x", &content),
                     "f({\"a\": [1, \"x);", "cut: the arguments so far");
    cr_assert_str_eq(calls(OA_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1"
                                            "</tool_call><tool_call>{\"name\": \"g\"}</tool_call>",
                           &content),
                     "f({\"a\": 1);g({});", "broken: as far as they are JSON");
    cr_assert_str_eq(calls(OA_TOOLS_HERMES,
                           "<tool_call>{\"name\": \"f\"}</tool_call><tool_call>oops</tool_call>"
                           "<tool_call>{\"name\": \"g\"}</tool_call>", &content),
                     "f({});g({});", "a later block that is no call is dropped");
    cr_assert_eq(content, 0);
    static const char *const text[] = {
        "no call here", "<tool_call>{\"name\": oops}</tool_call>", "<tool_call>[1, 2]</tool_call>",
        "<tool_call>{\"arguments\":{}}</tool_call>", "<tool_call></tool_call>", "",
        "<tool_call>{\"name\": \"f\"", "<tool_call>{\"name\": \"f\", \"arguments\": [1]}",
        "<tool_call>{\"name\": 3, \"arguments\": {}}",
        "<tool_call>oops</tool_call><tool_call>{\"name\": \"g\"}</tool_call>",
    };
    expect_text(OA_TOOLS_HERMES, text, sizeof text / sizeof *text);
}

Test(openai_tools, llama3_json)
{
    size_t content;
    cr_assert_str_eq(calls(OA_TOOLS_LLAMA3_JSON,
                           " {\"name\": \"f\", \"parameters\": {\"x\": 1}}\n", &content),
                     "f({\"x\": 1});");
    cr_assert_eq(content, 0);
    cr_assert_str_eq(calls(OA_TOOLS_LLAMA3_JSON,
                           "<|python_tag|>{\"name\":\"a\",\"parameters\":{}}; "
                           "{\"name\":\"b\",\"arguments\":{\"y\":\"z\"}}", &content),
                     "a({});b({\"y\":\"z\"});");
    cr_assert_str_eq(calls(OA_TOOLS_LLAMA3_JSON, "{\"name\":\"f\",\"parameters\":{}} and more",
                           &content),
                     "f({});", "text after a call is dropped: the call went out before it");
    cr_assert_eq(content, 0);
    static const char *const text[] = {
        "Hello {\"name\":\"f\",\"parameters\":{}}", "{not json", "{\"parameters\":{}}",
        "[{\"name\":\"f\"}]", "", "<|python_tag|>", "{\"name\": \"f\"",
    };
    expect_text(OA_TOOLS_LLAMA3_JSON, text, sizeof text / sizeof *text);
    cr_assert_null(calls(OA_TOOLS_NONE, "{\"name\":\"f\",\"parameters\":{}}", &content));
}

Test(openai_tools, mistral)
{
    size_t content;
    const char *t = "Checking.[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}}, "
                    "{\"name\": \"g\", \"arguments\": {}}]";
    cr_assert_str_eq(calls(OA_TOOLS_MISTRAL, t, &content), "f({\"a\": 1});g({});");
    cr_assert_eq(content, strlen("Checking."));
    cr_assert_str_eq(calls(OA_TOOLS_MISTRAL, " [{\"name\": \"f\", \"arguments\": {}}]\n", &content),
                     "f({});", "[TOOL_CALLS] skipped as a special token");
    cr_assert_eq(content, 0);
    cr_assert_str_eq(calls(OA_TOOLS_MISTRAL, "[{\"name\": \"f\"}] and more", &content), "f({});");
    cr_assert_str_eq(calls(OA_TOOLS_MISTRAL, "[1, 2] then [TOOL_CALLS] [{\"name\": \"f\"}]",
                           &content),
                     "f({});", "a list that is no calls is content before the tag");
    cr_assert_eq(content, strlen("[1, 2] then "));
    static const char *const text[] = {
        "[1, 2, 3]", "[TOOL_CALLS] not json", "[]", "Sure: [{\"name\": \"f\", \"arguments\": {}}]",
        "[TOOL_CALLS]", "[TOOL_", "[{\"name\": \"f\"",
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
                     "weather({\"city\": \"Paris\"});time({});");
    cr_assert_eq(content, strlen("Let me check."));
    cr_assert_str_eq(calls(OA_TOOLS_DEEPSEEK_V3,
                           "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```"
                           "json\n{}", &content),
                     "f({});", "cut before the fence: the call stands");
    static const char *const text[] = {
        "plain",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\nnot json\n```"
        "<｜tool▁call▁end｜>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>retrieval<｜tool▁sep｜>f\n```json\n{}\n```"
        "<｜tool▁call▁end｜>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```js",
        "<｜tool▁calls▁begin｜>",
    };
    expect_text(OA_TOOLS_DEEPSEEK_V3, text, sizeof text / sizeof *text);
}

/* Content of a reply so far (or final). */
static size_t content_of(enum oa_tools p, const char *text, int final)
{
    struct oa_calls c;
    oa_tools_read(p, text, strlen(text), final, &c);
    oa_calls_free(&c);
    return c.content_len;
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
        {OA_TOOLS_HERMES, "abc<tool_call>nope", 0, 18},
        {OA_TOOLS_HERMES, "a < b", 0, 5},
        {OA_TOOLS_LLAMA3_JSON, "", 0, 0},
        {OA_TOOLS_LLAMA3_JSON, "  ", 0, 0},
        {OA_TOOLS_LLAMA3_JSON, " {\"name", 0, 0},
        {OA_TOOLS_LLAMA3_JSON, "<|pyth", 0, 0},
        {OA_TOOLS_LLAMA3_JSON, "Sure", 0, 4},
        {OA_TOOLS_LLAMA3_JSON, "{\"name", 1, 6},
        {OA_TOOLS_LLAMA3_JSON, "{oops", 0, 5},
        {OA_TOOLS_MISTRAL, "Hi[TOOL_CALLS][{", 0, 2},
        {OA_TOOLS_MISTRAL, "Hi[TOOL_", 0, 2},
        {OA_TOOLS_MISTRAL, " [{\"na", 0, 0},
        {OA_TOOLS_MISTRAL, "Sure", 0, 4},
        {OA_TOOLS_MISTRAL, "[1]", 1, 3},
        {OA_TOOLS_MISTRAL, "[1, [TOOL_", 0, 4},
        {OA_TOOLS_DEEPSEEK_V3, "Hi<｜tool", 0, 2},
        {OA_TOOLS_NONE, "<tool_", 0, 6},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        cr_expect_eq(content_of(c[i].p, c[i].text, c[i].final), c[i].want, "case %zu: '%s'", i,
                     c[i].text);
}

/* A reply streamed a byte at a time as the frontend streams it: the
 * content sent, and per call the name (sent once, whole), the argument
 * fragments and their number; each read must extend what went out. */
struct streamed {
    char content[512];
    size_t n;
    char name[4][32], args[4][512];
    int frags[4];
};

static void stream(enum oa_tools p, const char *text, struct streamed *o)
{
    size_t len = strlen(text), sent = 0, calls_sent = 0, args_sent = 0;
    memset(o, 0, sizeof *o);
    for (size_t k = 0; k <= len + 1; k++) {
        struct oa_calls c;
        oa_tools_read(p, text, k <= len ? k : len, k > len, &c);
        cr_assert_geq(c.n, calls_sent, "a call taken back at %zu", k);
        if (c.content_len > sent) {
            cr_assert_eq(calls_sent, 0, "content after a call at %zu", k);
            memcpy(o->content + sent, text + sent, c.content_len - sent);
            sent = c.content_len;
        }
        for (size_t i = calls_sent ? calls_sent - 1 : 0; i < c.n && i < 4; i++) {
            if (i >= calls_sent) {
                snprintf(o->name[i], sizeof o->name[i], "%s", c.call[i].name);
                calls_sent = i + 1, args_sent = 0;
            }
            cr_assert_str_eq(c.call[i].name, o->name[i], "a name changed at %zu", k);
            cr_assert_geq(c.call[i].args_len, args_sent);
            cr_assert(!memcmp(c.call[i].args, o->args[i], args_sent), "arguments changed at %zu",
                      k);
            if (c.call[i].args_len > args_sent) {
                memcpy(o->args[i] + args_sent, c.call[i].args + args_sent,
                       c.call[i].args_len - args_sent);
                o->frags[i]++;
            }
            args_sent = c.call[i].args_len;
        }
        o->n = c.n;
        oa_calls_free(&c);
    }
}

/* Streamed byte by byte, a reply gives what it gives whole: the content,
 * the calls opened once their names are read, the arguments in fragments
 * (many for a long object) that join into the whole reply's. */
static void expect_streamed(enum oa_tools p, const char *text, const char *content,
                            const char *want, int min_frags)
{
    struct streamed o;
    stream(p, text, &o);
    size_t whole_content;
    const char *whole = calls(p, text, &whole_content);
    char got[1024] = "";
    for (size_t i = 0, n = 0; i < o.n; i++)
        n += (size_t)snprintf(got + n, sizeof got - n, "%s(%s);", o.name[i], o.args[i]);
    cr_assert_str_eq(got, want, "%s", text);
    cr_assert_str_eq(whole ? whole : "", want, "streamed == whole: %s", text);
    cr_assert_str_eq(o.content, content);
    cr_assert_eq(whole_content, strlen(content));
    cr_assert_geq(o.frags[0], min_frags, "%d fragments", o.frags[0]);
}

#define LONG_ARGS \
    "{\"city\": \"Oslo\", \"days\": [1, 2, 3], \"unit\": \"celsius\", \"note\": \"é\"}"

Test(openai_tools, streamed_calls_each_parser)
{
    expect_streamed(OA_TOOLS_HERMES,
                    "On it.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": " LONG_ARGS
                    "}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n"
                    "</tool_call>",
                    "On it.\n", "weather(" LONG_ARGS ");time({});", 40);
    expect_streamed(OA_TOOLS_LLAMA3_JSON,
                    "<|python_tag|>{\"name\": \"weather\", \"parameters\": " LONG_ARGS "}; "
                    "{\"name\": \"time\", \"parameters\": {}}",
                    "", "weather(" LONG_ARGS ");time({});", 40);
    expect_streamed(OA_TOOLS_MISTRAL,
                    "Sure.[TOOL_CALLS][{\"name\": \"weather\", \"arguments\": " LONG_ARGS "}, "
                    "{\"name\": \"time\", \"arguments\": {}}]",
                    "Sure.", "weather(" LONG_ARGS ");time({});", 40);
    expect_streamed(OA_TOOLS_MISTRAL,
                    "[{\"name\": \"weather\", \"arguments\": " LONG_ARGS "}]", "",
                    "weather(" LONG_ARGS ");", 40);
    expect_streamed(OA_TOOLS_DEEPSEEK_V3,
                    "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
                    "weather\n```json\n" LONG_ARGS "\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>"
                    "function<｜tool▁sep｜>time\n```json\n{}\n```<｜tool▁call▁end｜>"
                    "<｜tool▁calls▁end｜>",
                    "Checking.", "weather(" LONG_ARGS ");time({});", 40);
    /* a string of arguments goes out whole once it has ended */
    expect_streamed(OA_TOOLS_HERMES,
                    "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>",
                    "", "f({\"x\": 1});", 1);
    /* a reply that is no call streams as content, all of it */
    expect_streamed(OA_TOOLS_HERMES, "Hi <tool_call>{\"name\": 1}</tool_call>",
                    "Hi <tool_call>{\"name\": 1}</tool_call>", "", 0);
    expect_streamed(OA_TOOLS_LLAMA3_JSON, "{\"parameters\": {}}", "{\"parameters\": {}}", "", 0);
}

/* Cut mid-arguments: the call went out and stays, with what there is. */
Test(openai_tools, streamed_cut_call)
{
    expect_streamed(OA_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"xy", "",
                    "f({\"a\": \"xy);", 5);
    expect_streamed(OA_TOOLS_DEEPSEEK_V3,
                    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n"
                    "{\"a\": tr", "", "f({\"a\": tr);", 5);
    /* a character cut in two is not sent in halves */
    expect_streamed(OA_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"\xC3",
                    "", "f({\"a\": \");", 5);
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
