/* OpenAI frontend: request parsing, validation and error shapes against the
 * mock engine api (no HTTP, no model). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "../plugins/openai/oa-impl.h"
#include "openai-mock.h"

static struct mock_engine *m;
static void setup(void) { m = mock_create(); }
static void teardown(void) { mock_free(m); }

TestSuite(openai_parse, .init = setup, .fini = teardown);

static int parse(enum oa_kind k, const char *body, struct oa_req *r, struct oa_err *e)
{
    memset(e, 0, sizeof *e);
    return oa_parse_request(k, body, strlen(body), &m->api, r, e);
}

/* Expects a failure with this status and (when given) param. */
static void expect_fail(enum oa_kind k, const char *body, int status, const char *param)
{
    struct oa_req r;
    struct oa_err e;
    int rc = parse(k, body, &r, &e);
    cr_assert_eq(rc, -status, "%s: rc %d (%s), expected %d", body, rc, e.message, -status);
    cr_assert_eq(e.status, status, "%s", body);
    if (param)
        cr_assert(e.param && !strcmp(e.param, param), "%s: param %s, expected %s", body,
                  e.param ? e.param : "(null)", param);
    cr_assert(e.message[0], "%s: empty message", body);
}

Test(openai_parse, completion_string_prompt_and_defaults)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_COMPLETION, "{\"model\":\"mock-model\",\"prompt\":\"hey\"}", &r, &e), 0,
                 "%s", e.message);
    cr_assert_eq(r.n_prompts, 1);
    cr_assert_eq(r.prompts[0].n, 4);     /* BOS + 3 bytes */
    cr_assert_eq(r.prompts[0].ids[0], 257);
    cr_assert_eq(r.prompts[0].ids[1], 'h');
    cr_assert_str_eq(r.prompts[0].text, "hey");
    cr_assert_eq(r.sp.n, 1);
    cr_assert_float_eq(r.sp.temperature, 1.0f, 1e-6);
    cr_assert_eq(r.sp.max_tokens, -1, "resolved at submit time from the context");
    cr_assert_eq(r.logprobs, -1);
    cr_assert_eq(r.stream, 0);
    cr_assert_eq(r.skip_special, 1);
    oa_req_free(&r);
}

Test(openai_parse, generation_config_defaults_apply_when_fields_are_absent)
{
    m->api.defaults.temperature = 0.6f;
    m->api.defaults.top_k = 50;
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":\"x\",\"top_k\":5}", &r, &e), 0, "%s", e.message);
    cr_assert_float_eq(r.sp.temperature, 0.6f, 1e-6);
    cr_assert_eq(r.sp.top_k, 5, "an explicit value wins");
    oa_req_free(&r);
}

Test(openai_parse, prompt_forms)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":[\"ab\",\"c\"],\"add_special_tokens\":false}", &r, &e), 0);
    cr_assert_eq(r.n_prompts, 2);
    cr_assert_eq(r.prompts[0].n, 2);
    cr_assert_eq(r.prompts[1].n, 1);
    oa_req_free(&r);
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":[1,2,3]}", &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.n_prompts, 1);
    cr_assert_eq(r.prompts[0].n, 3);
    cr_assert_null(r.prompts[0].text);
    oa_req_free(&r);
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":[[1,2],[3]]}", &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.n_prompts, 2);
    cr_assert_eq(r.prompts[1].ids[0], 3);
    oa_req_free(&r);
}

Test(openai_parse, bad_bodies)
{
    expect_fail(OA_COMPLETION, "", 400, NULL);
    expect_fail(OA_COMPLETION, "{\"prompt\":", 400, NULL);
    expect_fail(OA_COMPLETION, "[1,2]", 400, NULL);
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\",\"temperature\":NaN}", 400, NULL);
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\",\"temperature\":1e999}", 400, NULL);
    expect_fail(OA_COMPLETION, "{\"prompt\":\"\xff\xfe\"}", 400, NULL);
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\\u0000b\"}", 400, NULL);
    expect_fail(OA_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\"}]}", 400, NULL);
}

Test(openai_parse, bad_fields_name_their_param)
{
    static const struct {
        const char *field;
        const char *body;
    } bad[] = {
        {"temperature", "{\"prompt\":\"a\",\"temperature\":-0.5}"},
        {"temperature", "{\"prompt\":\"a\",\"temperature\":\"hot\"}"},
        {"top_p", "{\"prompt\":\"a\",\"top_p\":0}"},
        {"top_p", "{\"prompt\":\"a\",\"top_p\":1.5}"},
        {"top_k", "{\"prompt\":\"a\",\"top_k\":1.5}"},
        {"top_k", "{\"prompt\":\"a\",\"top_k\":-2}"},
        {"min_p", "{\"prompt\":\"a\",\"min_p\":2}"},
        {"repetition_penalty", "{\"prompt\":\"a\",\"repetition_penalty\":0}"},
        {"presence_penalty", "{\"prompt\":\"a\",\"presence_penalty\":3}"},
        {"frequency_penalty", "{\"prompt\":\"a\",\"frequency_penalty\":-2.5}"},
        {"n", "{\"prompt\":\"a\",\"n\":0}"},
        {"n", "{\"prompt\":\"a\",\"n\":1000}"},
        {"max_tokens", "{\"prompt\":\"a\",\"max_tokens\":-1}"},
        {"max_tokens", "{\"prompt\":\"a\",\"max_tokens\":0}"},
        {"max_tokens", "{\"prompt\":\"a\",\"max_tokens\":\"5\"}"},
        {"min_tokens", "{\"prompt\":\"a\",\"min_tokens\":-1}"},
        {"min_tokens", "{\"prompt\":\"a\",\"min_tokens\":9,\"max_tokens\":3}"},
        {"seed", "{\"prompt\":\"a\",\"seed\":1.5}"},
        {"logprobs", "{\"prompt\":\"a\",\"logprobs\":21}"},
        {"logprobs", "{\"prompt\":\"a\",\"logprobs\":true}"},
        {"ignore_eos", "{\"prompt\":\"a\",\"ignore_eos\":1}"},
        {"stream", "{\"prompt\":\"a\",\"stream\":\"yes\"}"},
        {"stream_options", "{\"prompt\":\"a\",\"stream_options\":{\"include_usage\":true}}"},
        {"stop", "{\"prompt\":\"a\",\"stop\":5}"},
        {"stop", "{\"prompt\":\"a\",\"stop\":[\"x\",1]}"},
        {"stop_token_ids", "{\"prompt\":\"a\",\"stop_token_ids\":[999]}"},
        {"stop_token_ids", "{\"prompt\":\"a\",\"stop_token_ids\":7}"},
        {"logit_bias", "{\"prompt\":\"a\",\"logit_bias\":{\"x\":1}}"},
        {"logit_bias", "{\"prompt\":\"a\",\"logit_bias\":{\"5\":200}}"},
        {"logit_bias", "{\"prompt\":\"a\",\"logit_bias\":{\"999\":1}}"},
        {"logit_bias", "{\"prompt\":\"a\",\"logit_bias\":[1]}"},
        {"suffix", "{\"prompt\":\"a\",\"suffix\":\"z\"}"},
        {"use_beam_search", "{\"prompt\":\"a\",\"use_beam_search\":true}"},
        {"best_of", "{\"prompt\":\"a\",\"best_of\":3}"},
        {"top_logprobs", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"top_logprobs\":2}"},
        {"top_logprobs", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"logprobs\":true,\"top_logprobs\":30}"},
        {"model", "{\"prompt\":\"a\",\"model\":7}"},
        /* prompt forms */
        {"prompt", "{\"prompt\":[]}"},
        {"prompt", "{\"prompt\":[[]]}"},
        {"prompt", "{\"prompt\":\"\",\"add_special_tokens\":false}"},
        {"prompt", "{\"prompt\":5}"},
        {"prompt", "{\"prompt\":[1,\"a\"]}"},
        {"prompt", "{\"prompt\":[\"a\",{}]}"},
        {"prompt", "{\"prompt\":[1,300]}"},
        {"prompt", "{\"prompt\":[-1]}"},
        {"prompt", "{}"},
        /* chat messages */
        {"messages", "{}"},
        {"messages", "{\"messages\":[]}"},
        {"messages", "{\"messages\":{}}"},
        {"messages", "{\"messages\":[{\"content\":\"x\"}]}"},
        {"messages", "{\"messages\":[\"x\"]}"},
        {"messages", "{\"messages\":[{\"role\":\"user\",\"content\":5}]}"},
        {"messages", "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}"},
        {"tools", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_fail(strstr(bad[i].body, "messages") || !strcmp(bad[i].field, "messages") ? OA_CHAT
                                                                                : OA_COMPLETION,
                    bad[i].body, 400,
                    bad[i].field);
}

Test(openai_parse, all_sampling_fields_reach_the_params)
{
    struct oa_req r;
    struct oa_err e;
    const char *body =
        "{\"prompt\":\"a\",\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,\"min_p\":0.05,"
        "\"repetition_penalty\":1.1,\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,"
        "\"logit_bias\":{\"5\":-100,\"7\":2.5},\"seed\":-3,\"n\":3,\"logprobs\":2,"
        "\"stop\":[\"zz\",\"yy\"],\"stop_token_ids\":[256],\"ignore_eos\":true,\"min_tokens\":2,"
        "\"max_tokens\":10,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"echo\":true,\"skip_special_tokens\":false,\"include_stop_str_in_output\":true,"
        "\"user\":\"u\",\"some_future_field\":{\"a\":1}}";
    cr_assert_eq(parse(OA_COMPLETION, body, &r, &e), 0, "%s", e.message);
    cr_assert_float_eq(r.sp.temperature, 0.5f, 1e-6);
    cr_assert_float_eq(r.sp.top_p, 0.9f, 1e-6);
    cr_assert_eq(r.sp.top_k, 40);
    cr_assert_float_eq(r.sp.min_p, 0.05f, 1e-6);
    cr_assert_float_eq(r.sp.repetition_penalty, 1.1f, 1e-6);
    cr_assert_float_eq(r.sp.presence_penalty, 0.5f, 1e-6);
    cr_assert_float_eq(r.sp.frequency_penalty, -0.5f, 1e-6);
    cr_assert_eq(r.sp.n_logit_bias, 2);
    cr_assert_eq(r.sp.logit_bias_ids[0], 5);
    cr_assert_float_eq(r.sp.logit_bias[1], 2.5f, 1e-6);
    cr_assert_eq(r.sp.has_seed, 1);
    cr_assert_eq((int64_t)r.sp.seed, -3);
    cr_assert_eq(r.sp.n, 3);
    cr_assert_eq(r.sp.logprobs, 2);
    cr_assert_eq(r.sp.n_stop, 2);
    cr_assert_str_eq(r.sp.stop[1], "yy");
    cr_assert_eq(r.sp.n_stop_token_ids, 1);
    cr_assert_eq(r.sp.stop_token_ids[0], 256);
    cr_assert_eq(r.sp.ignore_eos, 1);
    cr_assert_eq(r.sp.min_tokens, 2);
    cr_assert_eq(r.sp.max_tokens, 10);
    cr_assert(r.stream && r.include_usage && r.echo && r.include_stop_str && !r.skip_special);
    cr_assert_eq(r.prompt_logprobs, 2, "echo with logprobs scores the prompt too");
    oa_req_free(&r);
}

Test(openai_parse, tool_choice)
{
    struct oa_req r;
    struct oa_err e;
#define TOOLS "\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"tools\":[{\"type\":" \
              "\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}]"
    static const struct {
        const char *body;
        int want_tools;
    } ok[] = {
        {"{" TOOLS "}", 1},
        {"{" TOOLS ",\"tool_choice\":\"auto\"}", 1},
        {"{" TOOLS ",\"tool_choice\":\"none\"}", 0},
        {"{" TOOLS ",\"tool_choice\":null}", 1},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"tools\":[]}", 0},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        cr_assert_eq(parse(OA_CHAT, ok[i].body, &r, &e), 0, "%s: %s", ok[i].body, e.message);
        cr_expect_eq(r.want_tools, ok[i].want_tools, "%s", ok[i].body);
        oa_req_free(&r);
    }
    expect_fail(OA_CHAT, "{" TOOLS ",\"tool_choice\":\"sometimes\"}", 400, "tool_choice");
    expect_fail(OA_CHAT, "{" TOOLS ",\"tool_choice\":5}", 400, "tool_choice");
    expect_fail(OA_CHAT, "{" TOOLS ",\"tool_choice\":{\"type\":\"function\"}}", 400,
                "tool_choice");
    expect_fail(OA_CHAT, "{" TOOLS ",\"tool_choice\":{\"type\":\"code\",\"function\":"
                         "{\"name\":\"f\"}}}", 400, "tool_choice");
#undef TOOLS
}

/* A forced call: tool_choice naming a function, or "required" with one
 * tool, guides the reply by that function's parameters. */
#define FORCE_MSGS "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
#define FORCE_TOOL(name, params) \
    "{\"type\":\"function\",\"function\":{\"name\":\"" name "\"" params "}}"
#define FORCE_PARAMS "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}," \
                     "\"required\":[\"city\"]}"
#define NAMED(name) ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"" name "\"}}"

static void expect_forced(const char *body, const char *name, const char *schema, int required)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_CHAT, body, &r, &e), 0, "%s: %s", body, e.message);
    cr_expect_str_eq(r.tool_name ? r.tool_name : "(null)", name, "%s", body);
    cr_expect_str_eq(r.json_schema ? r.json_schema : "(null)", schema, "%s", body);
    cr_expect_eq(r.tool_required, required, "%s", body);
    cr_expect_eq(r.want_tools, 0, "no parser reads a forced reply: %s", body);
    cr_expect(strstr(m->last_tools, "\"name\":\"weather\""), "tools reach the template: %s",
              m->last_tools);
    oa_req_free(&r);
}

Test(openai_parse, forced_tool_call)
{
    const char *two = "\"tools\":[" FORCE_TOOL("weather", ",\"parameters\":" FORCE_PARAMS) ","
                      FORCE_TOOL("time", "") "]";
    char body[1024];
    snprintf(body, sizeof body, FORCE_MSGS "%s" NAMED("weather") "}", two);
    expect_forced(body, "weather", FORCE_PARAMS, 0);
    snprintf(body, sizeof body, FORCE_MSGS "%s" NAMED("time") "}", two);
    expect_forced(body, "time", "{\"type\":\"object\"}", 0); /* no parameters: any object */
    /* "type" may be left out, as vLLM allows */
    snprintf(body, sizeof body, FORCE_MSGS "%s,\"tool_choice\":{\"function\":{\"name\":\"time\"}}}",
             two);
    expect_forced(body, "time", "{\"type\":\"object\"}", 0);
    expect_forced(FORCE_MSGS "\"tools\":[" FORCE_TOOL("weather", ",\"parameters\":" FORCE_PARAMS)
                  "],\"tool_choice\":\"required\"}", "weather", FORCE_PARAMS, 1);

    struct oa_req r;
    struct oa_err e;
    expect_fail(OA_CHAT, FORCE_MSGS "\"tool_choice\":\"required\"}", 400, "tool_choice");
    snprintf(body, sizeof body, FORCE_MSGS "%s" NAMED("rain") "}", two);
    cr_assert_eq(parse(OA_CHAT, body, &r, &e), -400);
    cr_assert_str_eq(e.param, "tool_choice");
    cr_assert(strstr(e.message, "'rain'"), "%s", e.message);
    expect_fail(OA_CHAT, FORCE_MSGS "\"tools\":[" FORCE_TOOL("f", ",\"parameters\":[1]") "]"
                NAMED("f") "}", 400, "tools");
    /* the schema is the tool's: no other one besides */
    snprintf(body, sizeof body, FORCE_MSGS "%s" NAMED("weather")
             ",\"response_format\":{\"type\":\"json_object\"}}", two);
    expect_fail(OA_CHAT, body, 400, "tool_choice");
    snprintf(body, sizeof body, FORCE_MSGS "%s" NAMED("weather") ",\"guided_json\":{}}", two);
    expect_fail(OA_CHAT, body, 400, "tool_choice");
    /* a text response_format is no schema */
    snprintf(body, sizeof body, FORCE_MSGS "%s" NAMED("weather")
             ",\"response_format\":{\"type\":\"text\"}}", two);
    expect_forced(body, "weather", FORCE_PARAMS, 0);
}

/* "required" over several tools: the reply is one {"name", "parameters"}
 * object, guided by an anyOf of one object per tool, the name its const
 * (a tool without parameters takes any object). */
#define ANY_BRANCH(name, params)                                                             \
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"" name "\"},"                   \
    "\"parameters\":" params "},\"required\":[\"name\",\"parameters\"],"                        \
    "\"additionalProperties\":false}"
#define REQUIRED ",\"tool_choice\":\"required\"}"

Test(openai_parse, required_of_several_tools)
{
    expect_forced(FORCE_MSGS "\"tools\":[" FORCE_TOOL("weather", ",\"parameters\":" FORCE_PARAMS)
                  "," FORCE_TOOL("time", "") "]" REQUIRED, "(null)",
                  "{\"anyOf\":[" ANY_BRANCH("weather", FORCE_PARAMS) ","
                  ANY_BRANCH("time", "{\"type\":\"object\"}") "]}", 1);
    expect_forced(FORCE_MSGS "\"tools\":[" FORCE_TOOL("weather", ",\"parameters\":null") ","
                  FORCE_TOOL("a", "") "," FORCE_TOOL("b", ",\"parameters\":{}") "]" REQUIRED,
                  "(null)",
                  "{\"anyOf\":[" ANY_BRANCH("weather", "{\"type\":\"object\"}") ","
                  ANY_BRANCH("a", "{\"type\":\"object\"}") "," ANY_BRANCH("b", "{}") "]}", 1);

    struct oa_req r;
    struct oa_err e;
    /* the name tells the branch: two tools of one name cannot be told apart */
    cr_assert_eq(parse(OA_CHAT, FORCE_MSGS "\"tools\":[" FORCE_TOOL("weather", "") ","
                       FORCE_TOOL("time", "") "," FORCE_TOOL("weather", ",\"parameters\":{}") "]"
                       REQUIRED, &r, &e), -400);
    cr_assert_str_eq(e.param, "tools");
    cr_assert(strstr(e.message, "'weather'") && strstr(e.message, "twice"), "%s", e.message);
    expect_fail(OA_CHAT, FORCE_MSGS "\"tools\":[" FORCE_TOOL("weather", "") ","
                "{\"type\":\"function\",\"function\":{\"name\":7}}]" REQUIRED, 400, "tools");
    expect_fail(OA_CHAT, FORCE_MSGS "\"tools\":[" FORCE_TOOL("weather", "") ","
                FORCE_TOOL("time", ",\"parameters\":\"x\"") "]" REQUIRED, 400, "tools");
    expect_fail(OA_CHAT, FORCE_MSGS "\"tools\":[" FORCE_TOOL("weather", "") ","
                FORCE_TOOL("time", "") "],\"guided_json\":{}" REQUIRED, 400, "tool_choice");
}
#undef ANY_BRANCH
#undef REQUIRED
#undef FORCE_MSGS
#undef FORCE_TOOL
#undef FORCE_PARAMS
#undef NAMED

/* A tool call's arguments string reaches the template as the object it
 * holds (vLLM's rule); one that is no JSON object stays a string. */
Test(openai_parse, tool_call_arguments_reach_the_template_as_objects)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_CHAT,
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},"
                       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
                       "{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"w\","
                       "\"arguments\":\"{\\\"city\\\": \\\"Oslo\\\"}\"}},"
                       "{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"v\","
                       "\"arguments\":\"not json\"}}]},"
                       "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}]}",
                       &r, &e),
                 0, "%s", e.message);
    cr_assert(strstr(m->last_messages, "\"arguments\":{\"city\":\"Oslo\"}"), "%s",
              m->last_messages);
    cr_assert(strstr(m->last_messages, "\"arguments\":\"not json\""), "%s", m->last_messages);
    cr_assert(strstr(m->last_messages, "\"tool_call_id\":\"c1\""), "%s", m->last_messages);
    oa_req_free(&r);
}

Test(openai_parse, prompt_logprobs_only_through_echo)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":1}", &r, &e), 0);
    cr_assert_eq(r.prompt_logprobs, -1, "no echo: the prompt is not scored");
    oa_req_free(&r);
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":\"a\",\"echo\":true}", &r, &e), 0);
    cr_assert_eq(r.prompt_logprobs, -1, "no logprobs asked");
    oa_req_free(&r);
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":\"a\",\"prompt_logprobs\":null}", &r, &e), 0);
    oa_req_free(&r);
    cr_assert_eq(parse(OA_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                                "\"prompt_logprobs\":1}", &r, &e), -400);
    cr_assert_str_eq(e.param, "prompt_logprobs");
    cr_assert(strstr(e.message, "echo with logprobs"), "%s", e.message);
    /* max_tokens 0 with echo: the prompt alone (one token generated, dropped) */
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":\"a\",\"echo\":true,\"logprobs\":1,"
                                      "\"max_tokens\":0}", &r, &e), 0, "%s", e.message);
    cr_assert(r.echo_only && r.sp.max_tokens == 1 && r.prompt_logprobs == 1);
    oa_req_free(&r);
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":0}", 400, "max_tokens");
}

/* truncate_prompt_tokens keeps each prompt's last k tokens (vLLM). */
Test(openai_parse, truncate_prompt_tokens)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_COMPLETION, "{\"prompt\":[\"abcdef\",\"xy\"],\"truncate_prompt_tokens\":3,"
                                      "\"echo\":true}", &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.prompts[0].n, 3);
    cr_assert_eq(r.prompts[0].ids[0], 'd', "the last three kept: 'def'");
    cr_assert_null(r.prompts[0].text, "the echo is the kept tokens, not the sent text");
    cr_assert_eq(r.prompts[1].n, 3, "BOS and 'xy' are within the limit");
    cr_assert_not_null(r.prompts[1].text);
    oa_req_free(&r);
    /* a longer prompt than max_model_len (64 in the mock) now fits */
    char body[512];
    snprintf(body, sizeof body, "{\"prompt\":\"%0100d\",\"max_tokens\":1,\"truncate_prompt_tokens\":20}", 0);
    cr_assert_eq(parse(OA_COMPLETION, body, &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.prompts[0].n, 20);
    oa_req_free(&r);
    /* -1: what leaves room for the completion (max_tokens, else one token) */
    snprintf(body, sizeof body, "{\"prompt\":\"%0100d\",\"truncate_prompt_tokens\":-1}", 0);
    cr_assert_eq(parse(OA_COMPLETION, body, &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.prompts[0].n, 63);
    oa_req_free(&r);
    snprintf(body, sizeof body, "{\"prompt\":\"%0100d\",\"max_tokens\":10,"
                                "\"truncate_prompt_tokens\":-1}", 0);
    cr_assert_eq(parse(OA_COMPLETION, body, &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.prompts[0].n, 54);
    oa_req_free(&r);
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\",\"truncate_prompt_tokens\":0}", 400,
                "truncate_prompt_tokens");
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\",\"truncate_prompt_tokens\":-2}", 400,
                "truncate_prompt_tokens");
}

/* response_format and vLLM's guided_json become the schema text the
 * engine compiles; shapes that are not a schema are refused here. */
static void expect_schema(enum oa_kind kind, const char *body, const char *want)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(kind, body, &r, &e), 0, "%s: %s", body, e.message);
    if (want)
        cr_expect_str_eq(r.json_schema ? r.json_schema : "(null)", want, "%s", body);
    else
        cr_expect_null(r.json_schema, "%s", body);
    oa_req_free(&r);
}

#define MSGS "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"

Test(openai_parse, response_format)
{
    expect_schema(OA_CHAT, MSGS "\"response_format\":{\"type\":\"text\"}}", NULL);
    expect_schema(OA_CHAT, MSGS "\"response_format\":{\"type\":\"json_object\"}}",
                  "{\"type\":\"object\"}");
    expect_schema(OA_CHAT, MSGS "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                  "{\"name\":\"n\",\"strict\":true,\"schema\":{\"type\":\"array\",\"items\":"
                  "{\"type\":\"integer\"}}}}}", "{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}");
    expect_schema(OA_COMPLETION, "{\"prompt\":\"a\",\"response_format\":{\"type\":\"json_object\"}}",
                  "{\"type\":\"object\"}");
    expect_schema(OA_COMPLETION, "{\"prompt\":\"a\",\"guided_json\":{\"type\":\"string\"}}",
                  "{\"type\":\"string\"}");
    expect_schema(OA_COMPLETION, "{\"prompt\":\"a\",\"guided_json\":\"{\\\"enum\\\":[1]}\"}",
                  "{\"enum\":[1]}");
    expect_fail(OA_CHAT, MSGS "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}",
                400, "response_format");
    expect_fail(OA_CHAT, MSGS "\"response_format\":{\"type\":\"xml\"}}", 400, "response_format");
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\",\"response_format\":\"json\"}", 400,
                "response_format");
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\",\"guided_json\":\"{\",\"max_tokens\":3}", 400,
                "guided_json");
    expect_fail(OA_COMPLETION, "{\"prompt\":\"a\",\"guided_json\":{},"
                "\"response_format\":{\"type\":\"json_object\"}}", 400, "guided_json");
    expect_fail(OA_CHAT, MSGS "\"max_tokens\":0}", 400, "max_tokens");
}

Test(openai_parse, chat_max_completion_tokens_wins_and_logprobs)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_CHAT,
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5,"
                       "\"max_completion_tokens\":7,\"logprobs\":true,\"top_logprobs\":3,\"stop\":\"x\"}",
                       &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.sp.max_tokens, 7);
    cr_assert_eq(r.logprobs, 3);
    cr_assert_eq(r.sp.n_stop, 1);
    cr_assert_str_eq(r.prompts[0].text, "<|user|>hi\n<|assistant|>");
    oa_req_free(&r);
}

Test(openai_parse, chat_messages_parts_tools_and_template_errors)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_CHAT,
                       "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                       "{\"type\":\"text\",\"text\":\"b\"}]}],\"tools\":[{\"type\":\"function\","
                       "\"function\":{\"name\":\"f\"}}],\"chat_template_kwargs\":{\"enable_thinking\":false},"
                       "\"add_generation_prompt\":false}",
                       &r, &e), 0, "%s", e.message);
    cr_assert_str_eq(r.prompts[0].text, "<|user|>a\nb\n");
    cr_assert(strstr(m->last_tools, "\"name\":\"f\""), "tools reach the template: %s", m->last_tools);
    cr_assert_str_eq(m->last_kwargs, "{\"enable_thinking\":false}");
    oa_req_free(&r);

    /* A template error is the client's problem (400) and names the cause. */
    memset(&e, 0, sizeof e);
    cr_assert_eq(parse(OA_CHAT, "{\"messages\":[{\"role\":\"raise\",\"content\":\"x\"}]}", &r, &e), -400);
    cr_assert(strstr(e.message, "the template raised"), "%s", e.message);
}

Test(openai_parse, unknown_model_is_404)
{
    struct oa_req r;
    struct oa_err e;
    cr_assert_eq(parse(OA_COMPLETION, "{\"model\":\"gpt-9\",\"prompt\":\"a\"}", &r, &e), -404);
    cr_assert_str_eq(e.code, "model_not_found");
    cr_assert_str_eq(e.message, "The model `gpt-9` does not exist.");
}

Test(openai_parse, context_length_uses_vllm_wording)
{
    struct oa_req r;
    struct oa_err e;
    /* 1 BOS + 60 bytes + 10 = 71 > 64 */
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\":\"%060d\",\"max_tokens\":10}", 0);
    cr_assert_eq(parse(OA_COMPLETION, body, &r, &e), -400);
    cr_assert_str_eq(e.message,
                     "This model's maximum context length is 64 tokens. However, you requested 71 "
                     "tokens (61 in the prompt, 10 in the completion). Please reduce the length of "
                     "the prompt or completion.");
    cr_assert_str_eq(e.code, "context_length_exceeded");
    snprintf(body, sizeof body, "{\"prompt\":\"%070d\"}", 0);
    cr_assert_eq(parse(OA_COMPLETION, body, &r, &e), -400);
    cr_assert(strstr(e.message, "maximum context length is 64 tokens. However, you requested 71 tokens"),
              "%s", e.message);
    snprintf(body, sizeof body, "{\"prompt\":\"%060d\",\"max_tokens\":3}", 0);
    cr_assert_eq(parse(OA_COMPLETION, body, &r, &e), 0, "fits exactly: %s", e.message);
    oa_req_free(&r);
}

Test(openai_parse, error_json_shape)
{
    struct oa_err e;
    oa_fail(&e, 400, "temperature", "bad %s", "value");
    char *s = oa_error_json(&e);
    json_t *o = json_loads(s, 0, NULL);
    cr_assert_not_null(o, "%s", s);
    json_t *err = json_object_get(o, "error");
    cr_assert_str_eq(json_string_value(json_object_get(err, "message")), "bad value");
    cr_assert_str_eq(json_string_value(json_object_get(err, "type")), "invalid_request_error");
    cr_assert_str_eq(json_string_value(json_object_get(err, "param")), "temperature");
    cr_assert(json_object_get(err, "code") != NULL);
    json_decref(o);
    free(s);
    /* A message quoting invalid UTF-8 still makes valid JSON. */
    oa_fail(&e, 500, NULL, "bad \xff");
    s = oa_error_json(&e);
    cr_assert_not_null(s);
    o = json_loads(s, 0, NULL);
    cr_assert_not_null(o);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "type")), "server_error");
    json_decref(o);
    free(s);
}

Test(openai_parse, tokenize_and_detokenize)
{
    struct oa_err e = {0};
    char *s = oa_tokenize("{\"prompt\":\"ab\"}", 15, &m->api, &e);
    cr_assert_not_null(s, "%s", e.message);
    cr_assert_str_eq(s, "{\"count\":3,\"tokens\":[257,97,98],\"max_model_len\":64}");
    free(s);
    s = oa_tokenize("{\"prompt\":\"ab\",\"add_special_tokens\":false}", 42, &m->api, &e);
    cr_assert_str_eq(s, "{\"count\":2,\"tokens\":[97,98],\"max_model_len\":64}");
    free(s);
    const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    s = oa_tokenize(chat, strlen(chat), &m->api, &e);
    cr_assert(s && strstr(s, "\"count\":23"), "%s", s ? s : e.message);
    free(s);
    s = oa_detokenize("{\"tokens\":[104,105,256]}", 24, &m->api, &e);
    cr_assert_str_eq(s, "{\"prompt\":\"hi</s>\"}");
    free(s);
    /* A lone byte token is not UTF-8: U+FFFD instead of a failure (fuzzer). */
    s = oa_detokenize("{\"tokens\":[104,204]}", 20, &m->api, &e);
    cr_assert_str_eq(s, "{\"prompt\":\"h\xef\xbf\xbd\"}");
    free(s);
    cr_assert_null(oa_detokenize("{\"tokens\":[1000]}", 17, &m->api, &e));
    cr_assert_eq(e.status, 400);
    cr_assert_null(oa_detokenize("{\"tokens\":\"x\"}", 14, &m->api, &e));
    cr_assert_eq(e.status, 400);
    cr_assert_null(oa_tokenize("{\"prompt\":5}", 12, &m->api, &e));
    cr_assert_eq(e.status, 400);
    cr_assert_null(oa_tokenize("{\"model\":\"x\",\"prompt\":\"a\"}", 26, &m->api, &e));
    cr_assert_eq(e.status, 404);
}
