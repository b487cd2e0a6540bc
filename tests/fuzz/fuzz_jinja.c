/* libFuzzer target: compile any bytes as a chat template and, when that
 * succeeds, render it over a small conversation with tools.  Must never
 * crash, hang or leak; errors are fine.  Build and run: tests/fuzz/run-jinja.sh */
#include <zlight/chat.h>

#include <stdint.h>
#include <stdlib.h>

static json_t *msgs, *tools, *vars;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!msgs) {
        msgs = json_loads("[{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hé \"},"
                          " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\","
                          " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]},"
                          " {\"role\": \"tool\", \"content\": \"42\"}]", 0, NULL);
        tools = json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}]", 0, NULL);
        vars = json_loads("{\"enable_thinking\": false, \"bos_token\": \"<s>\", \"n\": 3}", 0, NULL);
    }
    struct zl_chat_template *t = NULL;
    if (zl_chat_template_compile((const char *)data, size, &t) == 0) {
        struct zl_chat_params p;
        zl_chat_default_params(&p);
        p.messages = msgs;
        p.tools = tools;
        p.vars = vars;
        p.add_generation_prompt = size & 1;
        p.max_output_bytes = 1 << 20;
        p.max_steps = 200000;
        char *out = NULL;
        if (zl_chat_template_render(t, &p, &out) == 0)
            free(out);
    }
    zl_chat_template_free(t);
    return 0;
}
