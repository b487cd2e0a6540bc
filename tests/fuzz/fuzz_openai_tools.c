/* libFuzzer target for the tool-call readers (plugins/openai/oa-tools.c):
 * the first byte picks the parser, the rest is a model's reply.  Every
 * reply must give calls of the API's shape or text, never a crash or a
 * leak; and no prefix of it may stream content past where its calls
 * begin (text sent as content that turns out to be a call cannot be taken
 * back). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/openai/oa-impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum oa_tools p = (enum oa_tools)(data[0] % 4);
    const char *text = (const char *)data + 1;
    size_t len = size - 1, content;
    json_t *calls = oa_tools_parse(p, text, len, &content);
    if (content > len)
        abort();
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_t *f = json_object_get(c, "function");
        if (!json_is_string(json_object_get(c, "id")) || !json_is_string(json_object_get(f, "name")) ||
            !json_is_string(json_object_get(f, "arguments")))
            abort();
    }
    size_t limit = calls ? content : len;
    for (size_t k = 0; k <= len; k++) {
        size_t sent = oa_tools_content_len(p, text, k, 0);
        if (sent > k || sent > limit)
            abort();
    }
    json_decref(calls);
    return 0;
}
