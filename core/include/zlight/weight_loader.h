/* The core's weight loader: one struct zl_weight_loader (model.h) over an HF
 * safetensors directory, a GGUF file, or seeded random ("dummy") weights.
 *
 *   struct zl_wloader *wl;
 *   zl_wloader_open("/models/llama", NULL, &wl);          // config + mapped files
 *   size_t need = zl_wloader_weight_bytes(wl, ZL_DTYPE_BF16); // size the reservation
 *   zl_wloader_bind(wl, backend, 0, mem);  mo->create(&(params){.weights = zl_wloader_ops(wl)}, &m);
 */
#ifndef ZLIGHT_WEIGHT_LOADER_H
#define ZLIGHT_WEIGHT_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/backend.h>
#include <zlight/dtype.h>
#include <zlight/hf_config.h>
#include <zlight/memory.h>
#include <zlight/model.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_wloader;

enum zl_wloader_format {
    ZL_WLOADER_SAFETENSORS = 0,
    ZL_WLOADER_GGUF = 1,
    ZL_WLOADER_DUMMY = 2,
};

struct zl_wloader_params {
    int dummy;              /* 1: random weights from config.json alone; 0 */
    uint64_t seed;          /* dummy weights' seed; 0 */
};

ZL_API struct zl_wloader_params zl_wloader_default_params(void);

/* Opens `path`: an HF directory (config.json + *.safetensors, sharded or
 * not), a .safetensors file with config.json beside it, or a .gguf file
 * (config from its metadata); with params->dummy only config.json is read
 * (path = the directory or the file).  params may be NULL (defaults).
 * ZL_ENOTFOUND / ZL_EIO / ZL_EINVAL from the readers, naming the file.
 * *out is NULL on failure. */
ZL_API int zl_wloader_open(const char *path, const struct zl_wloader_params *params,
                           struct zl_wloader **out);

/* Unmaps the files and frees staging buffers; the loaded device tensors live
 * in the memory manager and stay.  NULL-safe, also half-built. */
ZL_API void zl_wloader_free(struct zl_wloader *wl);

ZL_API enum zl_wloader_format zl_wloader_get_format(const struct zl_wloader *wl);

/* The model description (config.json or GGUF metadata). */
ZL_API const struct zl_hf_config *zl_wloader_config(const struct zl_wloader *wl);

/* Weight dtype to run in when the user does not say: the checkpoint's float
 * dtype (bf16 / f16 / f32), f16 for quantized GGUF tensors, bf16 for dummy. */
ZL_API enum zl_dtype zl_wloader_default_dtype(const struct zl_wloader *wl);

/* An upper bound of the weights-region bytes a model loading every tensor in
 * `dtype` (vectors in f32) needs, alignment included. */
ZL_API size_t zl_wloader_weight_bytes(const struct zl_wloader *wl, enum zl_dtype dtype);

/* Where loads go: `mem`'s weights region (LOADING phase) on `device` of
 * `be`, uploaded with be->copy_to_device.  Call before using the ops. */
ZL_API void zl_wloader_bind(struct zl_wloader *wl, const struct zl_backend_ops *be, int device,
                            struct zl_mem *mem);

/* The table a model's create() receives; valid while wl lives.  load():
 * `shape` is the whole tensor as the model expects it (outermost first),
 * rows = [begin, end) of shape[0] or NULL for all; names are HF names
 * whatever the format (GGUF names are mapped, e.g. blk.3.attn_q.weight is
 * model.layers.3.self_attn.q_proj.weight, and llama Q/K rows unpermuted). */
ZL_API const struct zl_weight_loader *zl_wloader_ops(struct zl_wloader *wl);

/* Bytes loaded so far (device tensors), for the load log. */
ZL_API size_t zl_wloader_loaded_bytes(const struct zl_wloader *wl);

#ifdef __cplusplus
}
#endif
#endif
