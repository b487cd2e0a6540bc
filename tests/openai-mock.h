/* A mock struct zl_engine_api for the OpenAI frontend tests: a byte
 * tokenizer (id = byte, 256 = "</s>" EOS, 257 = "<s>" BOS, vocab 300), a
 * "<|role|>content\n" chat template and a generator thread that emits the
 * letters a, b, c ... (sequence j starts at letter j) one token per tick.
 *
 *   struct mock_engine *m = mock_create();  m->max_model_len = 64;
 *   const struct zl_engine_api *api = mock_api(m);
 *   ... start the frontend with api ...
 *   mock_free(m);
 */
#ifndef ZLIGHT_TEST_OPENAI_MOCK_H
#define ZLIGHT_TEST_OPENAI_MOCK_H

#include <pthread.h>
#include <zlight/frontend.h>

struct mock_req;

struct mock_engine {
    struct zl_engine_api api;
    pthread_mutex_t mu;
    pthread_t thread;
    int running;
    struct mock_req *reqs;          /* active requests */
    uint64_t next_id;
    /* knobs */
    int tick_us;                    /* delay between tokens; 0 = none */
    int eos_after;                  /* > 0: EOS as token number eos_after (0-based) */
    int dead;                       /* health fails, submit refuses */
    int hold;                       /* 1: generate nothing until cleared */
    int fail_submit_at;             /* > 0: that submit (1-based) fails with ZL_EINVAL */
    const char *script;             /* non-NULL: every sequence emits these bytes, then stops */
    /* what the frontend did */
    int n_submits, n_cancels, n_finished;
    struct zl_fe_request last;      /* last submit (pointers not kept) */
    int32_t last_prompt[512];
    int32_t last_n_stop;
    char last_stop0[64];
    char last_tools[512];           /* last render_chat tools_json */
    char last_messages[1024];       /* last render_chat messages_json */
    char last_kwargs[512];
    char last_schema[512];          /* last submit's json_schema ("" for none) */
    char last_guide_after[64];      /* and its guide_after ("" for none) */
};

struct mock_engine *mock_create(void);
void mock_free(struct mock_engine *m);
/* Waits until no request is active (up to ms); 1 when idle. */
int mock_wait_idle(struct mock_engine *m, int ms);
int mock_active(struct mock_engine *m);

#endif
