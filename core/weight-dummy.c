/* `weights: dummy`: seeded random weights from config.json alone, for
 * benchmarks (as vLLM's --load-format dummy).  Values depend only on the
 * seed, the tensor name and the element index, so any slice of a tensor
 * (tensor-parallel shards) is the same as in the whole. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weight-loader-impl.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int zl_wdummy_has(const struct zl_hf_config *c, const char *name)
{
    int qwen2 = !strcmp(c->model_type, "qwen2");
    if (!strcmp(name, "lm_head.weight"))
        return !c->tie_word_embeddings;
    if (ends_with(name, "o_proj.bias"))
        return c->attention_bias && !qwen2;
    if (ends_with(name, "q_proj.bias") || ends_with(name, "k_proj.bias") ||
        ends_with(name, "v_proj.bias"))
        return c->attention_bias || qwen2;
    if (strstr(name, ".mlp.") && ends_with(name, ".bias"))
        return c->mlp_bias;
    if (!strcmp(name, "rope_freqs.weight"))
        return 0;
    return 1;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void zl_wdummy_fill(uint64_t seed, const char *name, int64_t first, int64_t n, float *dst)
{
    if (ends_with(name, "norm.weight")) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = 1.0f;
        return;
    }
    uint64_t h = 1469598103934665603ull ^ seed; /* FNV-1a of the name, seeded */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    /* uniform in [-0.05, 0.05): the scale of initialised weights */
    for (int64_t i = 0; i < n; i++)
        dst[i] = (float)((double)(splitmix64(h + (uint64_t)(first + i)) >> 11) * 0x1.0p-53 - 0.5) * 0.1f;
}

int64_t zl_wdummy_param_count(const struct zl_hf_config *c, int64_t *n_vectors)
{
    int64_t e = c->hidden_size, f = c->intermediate_size, l = c->num_hidden_layers;
    int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
    int64_t per_layer = e * qd * 2 + e * kvd * 2 + 3 * e * f;
    *n_vectors = 2 * l + 1 + 6 * l; /* norms, and at most six biases per layer */
    return c->vocab_size * e * (c->tie_word_embeddings ? 1 : 2) + l * per_layer;
}

/* ---- filling a tensor in its dtype, in parallel ---- */

#define DUMMY_CHUNK 65536 /* f32 elements generated before each conversion */
#define DUMMY_MAX_THREADS 16

struct dummy_job {
    uint64_t seed;
    const char *name;
    int64_t first, n;
    enum zl_dtype dt;
    char *dst;
    int rc;
};

/* Round to nearest even, as zl_dtype_convert does; inline because the
 * values are finite and a dummy 1B model is a billion of them. */
static void to_bf16(uint16_t *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &src[i], sizeof b);
        dst[i] = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    }
}

static void *dummy_run(void *arg)
{
    struct dummy_job *j = arg;
    size_t es = zl_dtype_bits(j->dt) / 8;
    float *tmp = j->dt == ZL_DTYPE_F32 ? NULL : malloc(DUMMY_CHUNK * sizeof(float));
    if (j->dt != ZL_DTYPE_F32 && !tmp) {
        j->rc = ZL_ENOMEM;
        return NULL;
    }
    for (int64_t i = 0; i < j->n && j->rc == ZL_OK; i += DUMMY_CHUNK) {
        int64_t m = j->n - i < DUMMY_CHUNK ? j->n - i : DUMMY_CHUNK;
        float *out = tmp ? tmp : (float *)(void *)(j->dst + (size_t)i * es);
        zl_wdummy_fill(j->seed, j->name, j->first + i, m, out);
        if (tmp && j->dt == ZL_DTYPE_BF16)
            to_bf16((uint16_t *)(void *)(j->dst + (size_t)i * es), tmp, m);
        else if (tmp)
            j->rc = zl_dtype_convert(j->dt, j->dst + (size_t)i * es, ZL_DTYPE_F32, tmp, (size_t)m);
    }
    free(tmp);
    return NULL;
}

int zl_wdummy_fill_dtype(uint64_t seed, const char *name, int64_t first, int64_t n, enum zl_dtype dt,
                         void *dst)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = n < 4 * DUMMY_CHUNK || cores < 2 ? 1 : cores > DUMMY_MAX_THREADS ? DUMMY_MAX_THREADS : (int)cores;
    struct dummy_job jobs[DUMMY_MAX_THREADS];
    pthread_t th[DUMMY_MAX_THREADS];
    int64_t per = (n + nt - 1) / nt;
    per = (per + DUMMY_CHUNK - 1) / DUMMY_CHUNK * DUMMY_CHUNK;
    int started = 0;
    for (int t = 0; t < nt; t++) {
        int64_t lo = (int64_t)t * per, hi = lo + per < n ? lo + per : n;
        jobs[t] = (struct dummy_job){seed, name, first + lo, hi > lo ? hi - lo : 0, dt,
                                     (char *)dst + (size_t)lo * (zl_dtype_bits(dt) / 8), ZL_OK};
        /* thread 0 is this one; a failed start runs the share here */
        if (t == 0 || pthread_create(&th[t], NULL, dummy_run, &jobs[t]) != 0)
            continue;
        started |= 1 << t;
    }
    dummy_run(&jobs[0]);
    int rc = jobs[0].rc;
    for (int t = 1; t < nt; t++) {
        if (started & (1 << t))
            pthread_join(th[t], NULL);
        else
            dummy_run(&jobs[t]);
        rc = rc < 0 ? rc : jobs[t].rc;
    }
    return rc < 0 ? zl_error(rc, "dummy weights for %s: out of memory", name) : ZL_OK;
}
