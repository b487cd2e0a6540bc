/* libFuzzer target for the tool-call readers and the reasoning split
 * (plugins/openai/oa-tools.c, oa-reason.c): the first byte picks the
 * parsers, the rest is a model's reply.  Every reply must give calls or
 * text, never a crash or a leak; and streamed a prefix at a time, it must
 * send nothing it would have to take back: no content or reasoning that the
 * whole reply makes something else, no call the whole reply does not have,
 * and per call the name whole and argument fragments that join into the
 * whole reply's arguments byte for byte (valid UTF-8, so the JSON strings
 * sent join the same way). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/openai/oa-impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether s[0, n) can go out as a JSON string as it is. */
static int utf8(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    json_decref(j);
    return j != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum oa_tools p = (enum oa_tools)(data[0] % 5);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct oa_calls fin;
    oa_tools_read(p, text, len, 1, &fin);
    if (fin.content_len > len || (!fin.n && fin.content_len != len))
        abort();
    for (size_t i = 0; i < fin.n; i++)
        if (!fin.call[i].name || !utf8(fin.call[i].name, strlen(fin.call[i].name)) ||
            !utf8(fin.call[i].args, fin.call[i].args_len))
            abort();
    /* the stream: every prefix (a long reply's in steps of several bytes,
     * as tokens come, to keep the square cost down), then the whole reply
     * as final */
    size_t limit = fin.n ? fin.content_len : len, sent = 0, calls_sent = 0, args_sent = 0;
    size_t step = 1 + len / 1024;
    char *joined = malloc(len + 3); /* the open call's fragments, joined */
    for (size_t k = 0; k <= len + 1; k = k >= len ? k + 1 : k + step < len ? k + step : len) {
        struct oa_calls c;
        oa_tools_read(p, text, k <= len ? k : len, k > len, &c);
        if (c.content_len > (k <= len ? k : len) || c.content_len > limit)
            abort(); /* content the whole reply does not have */
        if (c.content_len > sent && calls_sent)
            abort(); /* content after a call */
        sent = c.content_len > sent ? c.content_len : sent;
        if (c.n > fin.n || c.n < calls_sent)
            abort(); /* a call the whole reply does not have, or one taken back */
        for (size_t i = 0; i < c.n; i++) {
            const struct oa_call *a = &c.call[i], *b = &fin.call[i];
            if (strcmp(a->name, b->name) || a->args_len > b->args_len ||
                memcmp(a->args, b->args, a->args_len) || !utf8(a->args, a->args_len))
                abort(); /* not a prefix of the whole reply's call */
            if (i + 1 < c.n && a->args_len != b->args_len)
                abort(); /* only the last call may still grow */
        }
        for (size_t i = calls_sent ? calls_sent - 1 : 0; i < c.n; i++) {
            if (i >= calls_sent) { /* the open call is done: all of it went out */
                if (calls_sent && (args_sent != fin.call[calls_sent - 1].args_len ||
                                   memcmp(joined, fin.call[calls_sent - 1].args, args_sent)))
                    abort();
                calls_sent = i + 1, args_sent = 0;
            }
            if (c.call[i].args_len < args_sent)
                abort();
            memcpy(joined + args_sent, c.call[i].args + args_sent, c.call[i].args_len - args_sent);
            args_sent = c.call[i].args_len;
        }
        oa_calls_free(&c);
    }
    if (calls_sent != fin.n || (calls_sent && (args_sent != fin.call[calls_sent - 1].args_len ||
                                               memcmp(joined, fin.call[calls_sent - 1].args,
                                                      args_sent))))
        abort(); /* the stream did not end with the whole reply's calls */
    free(joined);
    oa_calls_free(&fin);

    enum oa_reason rp = (enum oa_reason)(data[0] / 5 % 3);
    struct oa_split whole, sp;
    oa_reason_split(rp, text, len, 1, &whole);
    if (whole.r_off > whole.r_end || whole.r_end > whole.c_off || whole.c_off > len)
        abort();
    for (size_t k = 0; k <= len; k++) {
        oa_reason_split(rp, text, k, 0, &sp);
        if (sp.r_end > sp.r_off && (sp.r_off != whole.r_off || sp.r_end > whole.r_end))
            abort(); /* streamed reasoning the whole reply does not have */
        if (k > sp.c_off && sp.c_off != whole.c_off)
            abort(); /* streamed content from another place */
    }
    return 0;
}
