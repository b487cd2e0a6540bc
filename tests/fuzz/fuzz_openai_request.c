/* libFuzzer target for the OpenAI frontend's request parser: the first
 * byte picks the endpoint (completions, chat, tokenize, detokenize), the
 * rest is the body.  Against the mock engine api (byte tokenizer, simple
 * chat template).  Every input must give a request or an error in
 * OpenAI's shape, never a crash or a leak. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/openai/oa-impl.h"
#include "../openai-mock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

const struct zl_host *oa_host;    /* openai.c (the server) is not linked */
static struct mock_engine *m;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!m) {
        m = mock_create();
        m->api.max_model_len = 256;
    }
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct oa_err e;
    memset(&e, 0, sizeof e);
    char *out = NULL;
    switch (data[0] % 4) {
    case 0:
    case 1: {
        struct oa_req r;
        if (oa_parse_request(data[0] % 2 ? OA_CHAT : OA_COMPLETION, body, len, &m->api, &r, &e) == 0) {
            if (r.n_prompts == 0 || r.sp.n < 1 || r.sp.n > OA_MAX_N)
                abort();
            oa_req_free(&r);
            return 0;
        }
        break;
    }
    case 2: out = oa_tokenize(body, len, &m->api, &e); break;
    default: out = oa_detokenize(body, len, &m->api, &e); break;
    }
    if (out) {
        free(out);
        return 0;
    }
    if (e.status < 400 || e.status > 599 || !e.message[0])
        abort();
    char *err = oa_error_json(&e);
    json_t *j = err ? json_loads(err, 0, NULL) : NULL;
    if (!j || !json_is_string(json_object_get(json_object_get(j, "error"), "message")))
        abort();
    json_decref(j);
    free(err);
    return 0;
}
