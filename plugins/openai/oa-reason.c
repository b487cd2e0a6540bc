/* Reasoning in chat replies (server.reasoning_parser), split off the
 * content as vLLM's reasoning parsers of the same names do:
 *   - deepseek_r1 (DeepSeek-R1 and its distills): the chat template opens
 *     <think> in the prompt, so the reply is reasoning up to </think> and
 *     content after it (a <think> the model writes itself is skipped);
 *   - qwen3 (Qwen3): reasoning only between a <think> that opens the reply
 *     and </think>; a reply without it (enable_thinking false) is content.
 * A reply that ends inside <think> is reasoning to its end (vLLM's
 * streaming does the same; its final qwen3 parse would call it content).
 * While streaming, a tail that may still become a tag is held back. */
#include <string.h>

#include "oa-impl.h"

static const char OPEN[] = "<think>", CLOSE[] = "</think>";

int oa_reason_parser(const char *name, enum oa_reason *out)
{
    static const char *const names[] = {"none", "deepseek_r1", "qwen3"}; /* enum oa_reason's */
    int i = oa_pick(names, sizeof names / sizeof *names, name);
    if (i >= 0)
        *out = (enum oa_reason)i;
    return i < 0 ? -1 : 0;
}

/* Whether s[0, n) is a proper prefix of tag (text that may become it). */
static int tag_prefix(const char *s, size_t n, const char *tag)
{
    return n < strlen(tag) && !memcmp(s, tag, n);
}

void oa_reason_split(enum oa_reason p, const char *text, size_t len, int final,
                     struct oa_split *out)
{
    *out = (struct oa_split){0, 0, 0};
    if (p == OA_REASON_NONE || !text)
        return;
    size_t i = oa_skip_ws(text, len, 0);
    if (!final && tag_prefix(text + i, len - i, OPEN)) { /* may yet open: hold it all */
        out->c_off = len;
        return;
    }
    int opened = len - i >= sizeof OPEN - 1 && !memcmp(text + i, OPEN, sizeof OPEN - 1);
    if (!opened && p == OA_REASON_QWEN3)
        return; /* thinking off: all content */
    size_t r = opened ? i + sizeof OPEN - 1 : 0;
    const char *end = oa_find(text + r, len - r, CLOSE);
    out->r_off = r;
    if (end) {
        out->r_end = (size_t)(end - text);
        out->c_off = out->r_end + sizeof CLOSE - 1;
    } else {
        out->r_end = final ? len : len - oa_partial_tail(text + r, len - r, CLOSE);
        out->c_off = len;
    }
}
