/* libFuzzer target: the GGUF parser and the dequantizers
 * (tests/fuzz/run-weights.sh).  Every accessor is exercised on whatever the
 * parser accepts, and tensor bytes must lie inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/gguf.h>
#include <zlight/hf_config.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zl_gguf *g;
    if (zl_gguf_parse_buffer(data, size, "fuzz", &g) < 0) {
        if (!zl_last_error()[0] || g)
            __builtin_trap();
        return 0;
    }
    volatile uint64_t sink = 0;
    for (int64_t i = 0; i < zl_gguf_n_kv(g); i++) {
        size_t len;
        const char *s = zl_gguf_get_str(g, i, &len);
        if (s && strlen(s) > len)
            __builtin_trap();
        double f = zl_gguf_get_f64(g, i);
        uint64_t fb;
        memcpy(&fb, &f, 8);     /* a cast of a negative or huge double would be UB */
        sink += (uint64_t)zl_gguf_get_i64(g, i) + zl_gguf_get_u64(g, i) + fb;
        size_t n = zl_gguf_get_arr_n(g, i);
        if (zl_gguf_get_arr_type(g, i) == ZL_GGUF_TYPE_STRING) {
            for (size_t j = 0; j < n; j++)
                sink += strlen(zl_gguf_get_arr_str(g, i, j, &len));
        } else if (n) {
            const uint8_t *a = zl_gguf_get_arr_data(g, i);
            sink += a[0];
        }
        if (zl_gguf_find_key(g, zl_gguf_key(g, i)) != i)
            __builtin_trap();
    }
    for (int64_t i = 0; i < zl_gguf_n_tensors(g); i++) {
        const struct zl_gguf_tensor_info *t = zl_gguf_tensor(g, i);
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size)
            __builtin_trap();
        if (t->nbytes)
            sink += p[0] + p[t->nbytes - 1];
        /* dequantize the last row when it is small */
        if (t->n_rows > 0 && t->ne[0] > 0 && t->ne[0] <= 4096 && zl_ggml_can_dequantize(t->type)) {
            float *out = malloc((size_t)t->ne[0] * sizeof *out);
            if (out && zl_gguf_dequantize_rows(t, t->n_rows - 1, 1, ZL_DTYPE_F32, out) < 0)
                __builtin_trap();
            free(out);
        }
    }
    struct zl_hf_config c;
    (void)zl_hf_config_from_gguf(g, &c);
    zl_gguf_close(g);
    return 0;
}
