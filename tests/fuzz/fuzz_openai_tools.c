/* libFuzzer target for the tool-call readers and the reasoning split
 * (plugins/openai/oa-tools.c, oa-reason.c): the first byte picks the
 * parsers, the rest is a model's reply.  Every reply must give calls of
 * the API's shape or text, never a crash or a leak; and no prefix of it
 * may stream as content what the whole reply makes a call, or as
 * reasoning or content what it makes something else (sent text cannot be
 * taken back). */
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
    enum oa_tools p = (enum oa_tools)(data[0] % 5);
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

    enum oa_reason rp = (enum oa_reason)(data[0] / 5 % 3);
    struct oa_split fin, sp;
    oa_reason_split(rp, text, len, 1, &fin);
    if (fin.r_off > fin.r_end || fin.r_end > fin.c_off || fin.c_off > len)
        abort();
    for (size_t k = 0; k <= len; k++) {
        oa_reason_split(rp, text, k, 0, &sp);
        if (sp.r_end > sp.r_off && (sp.r_off != fin.r_off || sp.r_end > fin.r_end))
            abort(); /* streamed reasoning the whole reply does not have */
        if (k > sp.c_off && sp.c_off != fin.c_off)
            abort(); /* streamed content from another place */
    }
    return 0;
}
