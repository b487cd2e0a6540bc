#!/usr/bin/env python3
"""The side-by-side baseline: PyTorch transformers on the same GPU, same
model, same shapes as bench-llama8b.sh's prefill2048 and b1 cases.

    python3 tests/cuda/bench_transformers.py tests/cuda/llama31-8b

Llama-3.1-8B's config with random bf16 weights (from_config on the GPU),
eager model with SDPA attention, no torch.compile:
  prefill: one 2048-token prompt, the forward that yields the first token;
  decode:  a 512-token prompt, then 128 single-token forwards with the KV
           cache (DynamicCache), time per token.
Median of 5 (prefill) / the mean over the 128 steps of each of 3 runs,
timed with CUDA events after a warm-up.
"""
import statistics
import sys

import torch
import transformers


def main():
    cfg = transformers.AutoConfig.from_pretrained(sys.argv[1])
    cfg.torch_dtype = torch.bfloat16
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(
            cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa").eval()
    print("transformers %s, torch %s, %s" % (transformers.__version__, torch.__version__,
                                             torch.cuda.get_device_name()))
    gen = torch.Generator(device="cuda").manual_seed(1)
    ev = lambda: torch.cuda.Event(enable_timing=True)

    def prefill(n):
        ids = torch.randint(1000, 100000, (1, n), device="cuda", generator=gen)
        a, b = ev(), ev()
        a.record()
        with torch.no_grad():
            out = model(ids, use_cache=True)
            tok = out.logits[:, -1].argmax(-1)
        b.record()
        torch.cuda.synchronize()
        return a.elapsed_time(b), out.past_key_values, tok

    prefill(256)
    times = [prefill(2048)[0] for _ in range(5)]
    print("BENCH transformers prefill2048: %.1f ms (median of 5; min %.1f)" %
          (statistics.median(times), min(times)))

    per_tok = []
    for run in range(3):
        _, cache, tok = prefill(512)
        a, b = ev(), ev()
        a.record()
        with torch.no_grad():
            for _ in range(128):
                out = model(tok[:, None], past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                tok = out.logits[:, -1].argmax(-1)
        b.record()
        torch.cuda.synchronize()
        per_tok.append(a.elapsed_time(b) / 128)
    print("BENCH transformers b1: %.2f ms/token (%.1f tok/s), runs %s" %
          (statistics.median(per_tok), 1000 / statistics.median(per_tok),
           ", ".join("%.2f" % t for t in per_tok)))


main()
