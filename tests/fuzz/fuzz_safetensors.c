/* libFuzzer target: the safetensors header parser (tests/fuzz/run-weights.sh).
 * Whatever the input, parsing must fail cleanly or give tensors whose bytes
 * all lie inside the input. */
#include <stdint.h>
#include <string.h>

#include <zlight/safetensors.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zl_safetensors *st;
    if (zl_safetensors_parse_buffer(data, size, "fuzz", &st) < 0) {
        if (!zl_last_error()[0] || st)
            __builtin_trap();   /* an error must say why and leave no object */
        return 0;
    }
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < zl_safetensors_n_tensors(st); i++) {
        const struct zl_safetensors_tensor *t = zl_safetensors_tensor(st, i), *u;
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size)
            __builtin_trap();
        if (t->nbytes)
            sink ^= p[0] ^ p[t->nbytes - 1];
        if (zl_safetensors_find(st, t->name) != i)
            __builtin_trap();
        if (zl_safetensors_get(st, t->name, &u) == 0)
            zl_safetensors_expect(st, t->name, t->dtype, (int)t->n_dims, t->shape);
    }
    (void)zl_safetensors_metadata(st, "format");
    zl_safetensors_close(st);
    return 0;
}
