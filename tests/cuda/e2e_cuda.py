#!/usr/bin/env python3
"""zlightd on the CUDA backend, end to end, on the GPU machine.

    python3 tests/cuda/e2e_cuda.py BUILD_DIR TOKENIZER_DIR

Makes a small Llama-3-shaped checkpoint with random weights (transformers'
from_config, seed 0, the real Llama 3 tokenizer and chat template from
TOKENIZER_DIR), serves it with zlightd (`backend: auto`, which must pick
CUDA) and checks over plain HTTP:
  - greedy completions are transformers' greedy ids, decoded (float32 both
    sides, so the comparison is exact: no tolerance),
  - a streamed chat completion carries the same text as the unstreamed one,
  - seeded sampling (device sampler) gives the same text alone and among 23
    concurrent requests, and differs between seeds,
  - a stop string cuts the greedy text where it first appears,
  - echo with logprobs scores the prompt as transformers' log-softmax does,
  - bad input (invalid JSON, a prompt over the context) gets a 400 with a
    message, and the server keeps serving;
twice, both with async scheduling (each step queued before the last
one's tokens are back: /metrics must count such steps): with `cuda_graphs:
true` (the decode steps must have replayed graphs: the backend's count,
logged at shutdown), then with graphs off.
Prints one PASS/FAIL line per check and exits 1 on any failure.
"""
import json
import lzma
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import torch
import transformers

BUILD, TOKDIR = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
fails = []
mode = ""


def check(name, ok, detail=""):
    name = "[%s] %s" % (mode, name)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail and not ok else ""))
    if not ok:
        fails.append(name)


def make_model(d):
    cfg = transformers.LlamaConfig(
        vocab_size=128256, hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
        rms_norm_eps=1e-5, rope_theta=500000.0, bos_token_id=128000, eos_token_id=128009,
        tie_word_embeddings=False, torch_dtype="float32")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():       # spread logits: greedy ids then have clear winners
        model.lm_head.weight.normal_(0.0, 0.5)
    model.save_pretrained(d, safe_serialization=True)
    with lzma.open(os.path.join(TOKDIR, "tokenizer.json.xz")) as f, \
            open(os.path.join(d, "tokenizer.json"), "wb") as g:
        shutil.copyfileobj(f, g)
    shutil.copy(os.path.join(TOKDIR, "tokenizer_config.json"), d)
    return model


def post(url, path, body, timeout=120):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main(graphs):
    global mode
    mode = "graphs" if graphs else "no graphs"
    work = tempfile.mkdtemp()
    mdir = os.path.join(work, "model")
    model = make_model(mdir)
    tok = transformers.AutoTokenizer.from_pretrained(mdir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(work, "z.yaml")
    with open(conf, "w") as f:
        f.write("model:\n  path: %s\n  served_name: tiny\n  dtype: float32\n  max_model_len: 256\n"
                "backend:\n  name: auto\n  gpu_memory_utilization: 0.3\n  cuda_graphs: %s\n"
                "engine:\n  max_num_seqs: 32\n  async_scheduling: true\n"
                "server:\n  port: %d\nlog_level: info\n"
                % (mdir, "true" if graphs else "false", port))
    env = dict(os.environ)
    env["ZLIGHT_PLUGIN_PATH"] = ":".join(os.path.join(BUILD, d) for d in (
        "kernels/cuda/.libs", "kernels/cpu/.libs", "models/llama/.libs", "plugins/openai/.libs"))
    log = open(os.path.join(work, "zlightd.log"), "w+")
    proc = subprocess.Popen([os.path.join(BUILD, "core/.libs/zlightd"), "--config", conf], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d" % port
    try:
        up = False
        for _ in range(600):
            if proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).read()
                up = True
                break
            except OSError:
                time.sleep(0.2)
        log.seek(0)
        text = log.read()
        check("zlightd serves with backend: auto", up, text[-2000:])
        if not up:
            return
        check("auto picked the CUDA backend", "backend 'auto': NVIDIA CUDA" in text,
              "\n".join(l for l in text.splitlines() if "backend" in l or "memory plan" in l))

        prompts = ["The capital of France is", "def fibonacci(n):", "1, 2, 3, 4,",
                   "Once upon a time"]
        for p in prompts:
            # ids, not text: both sides see the same prompt whatever the BOS rules
            ids = [128000] + tok(p, add_special_tokens=False).input_ids
            with torch.no_grad():
                ref = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                                     attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     pad_token_id=128009)[0, len(ids):]
            st, body = post(url, "/v1/completions", {"model": "tiny", "prompt": ids, "max_tokens": 16,
                                                     "temperature": 0, "ignore_eos": True})
            got = json.loads(body)["choices"][0]["text"] if st == 200 else "HTTP %d %s" % (st, body)
            # the server skips special tokens in text, as vLLM does by default
            want = {tok.decode(ref, skip_special_tokens=True), tok.decode(ref)}
            check("greedy text == transformers' greedy ids decoded: %r" % p, got in want,
                  "%r vs %r" % (got, want))
            greedy = got

        # echo + logprobs: each prompt token's logprob (scored by the device
        # sampler) against transformers' log-softmax of the same logits; f32 on
        # both sides, summed in other orders over 4 layers, hence 2e-3
        ids = [128000] + tok(prompts[0], add_special_tokens=False).input_ids
        with torch.no_grad():
            ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        st, body = post(url, "/v1/completions", {"model": "tiny", "prompt": ids, "max_tokens": 1,
                                                 "temperature": 0, "echo": True, "logprobs": 2})
        lp = json.loads(body)["choices"][0]["logprobs"] if st == 200 else {}
        got = lp.get("token_logprobs", [])
        want = [None] + [ref[j - 1, ids[j]].item() for j in range(1, len(ids))]
        tops = lp.get("top_logprobs", [])
        best = [None] + [ref[j - 1].max().item() for j in range(1, len(ids))]
        check("echo logprobs == transformers' log-softmax of the prompt",
              len(got) == len(ids) + 1 and got[0] is None and
              all(abs(got[j] - want[j]) < 2e-3 for j in range(1, len(ids))) and
              all(abs(max(tops[j].values()) - best[j]) < 2e-3 for j in range(1, len(ids))),
              "%d %r vs %r" % (st, got, want))
        ids = [128000] + tok(prompts[-1], add_special_tokens=False).input_ids

        # the last prompt's greedy text, cut at a stop string from its middle
        stop = greedy[len(greedy) // 2:len(greedy) // 2 + 3]
        st, body = post(url, "/v1/completions", {"model": "tiny", "prompt": ids, "max_tokens": 16,
                                                 "temperature": 0, "ignore_eos": True,
                                                 "stop": [stop]})
        ch = json.loads(body)["choices"][0] if st == 200 else {}
        check("stop string %r cuts the greedy text" % stop,
              len(stop) == 3 and ch.get("text") == greedy[:greedy.find(stop)] and
              ch.get("finish_reason") == "stop", "%d %r" % (st, ch))

        msgs = [{"role": "user", "content": "Write a haiku about GPUs."}]
        st, body = post(url, "/v1/chat/completions", {"model": "tiny", "messages": msgs,
                                                      "max_tokens": 24, "temperature": 0})
        plain = json.loads(body)["choices"][0]["message"]["content"] if st == 200 else None
        req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(
            {"model": "tiny", "messages": msgs, "max_tokens": 24, "temperature": 0,
             "stream": True}).encode(), headers={"Content-Type": "application/json"})
        parts, done = [], False
        with urllib.request.urlopen(req, timeout=60) as r:
            for line in r:
                line = line.decode().strip()
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    d = json.loads(line[6:])["choices"][0]["delta"]
                    parts.append(d.get("content") or "")
        check("streamed chat == unstreamed chat", done and plain is not None and "".join(parts) == plain,
              "%r vs %r" % ("".join(parts), plain))

        def sampled(i, out):
            st, body = post(url, "/v1/completions", {"model": "tiny", "prompt": prompts[i % 4],
                                                     "max_tokens": 24, "temperature": 0.8,
                                                     "top_p": 0.9, "top_k": 50, "seed": 1000 + i,
                                                     "frequency_penalty": 0.3, "ignore_eos": True})
            out[i] = json.loads(body)["choices"][0]["text"] if st == 200 else "HTTP %d" % st

        alone = {}
        sampled(0, alone)
        sampled(1, alone)
        busy = {}
        threads = [threading.Thread(target=sampled, args=(i, busy)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check("seeded sampling: alone == among 23 others", alone[0] == busy[0] and alone[1] == busy[1],
              "%r / %r" % (alone[0], busy[0]))
        check("seeded sampling: seeds differ", busy[0] != busy[4], busy[0])

        st, body = post(url, "/v1/completions", b"{not json")
        check("invalid JSON -> 400 with a message", st == 400 and "message" in body, "%d %s" % (st, body))
        st, body = post(url, "/v1/completions", {"model": "tiny", "prompt": "word " * 400,
                                                 "max_tokens": 4})
        check("prompt over the context -> 400", st == 400 and "context" in body.lower(),
              "%d %s" % (st, body))
        st, _ = post(url, "/v1/completions", {"model": "tiny", "prompt": "still", "max_tokens": 2})
        check("still serving after bad input", st == 200)
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            m = re.search(r"^zlight:engine_async_steps_total\{[^}]*\} (\S+)$", r.read().decode(),
                          re.M)
        check("steps were queued ahead of their tokens (async scheduling)",
              m is not None and float(m.group(1)) > 0,
              m.group(0) if m else "no engine_async_steps_total in /metrics")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        check("zlightd exits 0 on SIGTERM", proc.returncode == 0, str(proc.returncode))
        log.seek(0)
        text = log.read()
        if graphs:
            m = re.search(r"graphs: (\d+) captured, (\d+) steps replayed", text)
            check("decode steps replayed CUDA graphs", m is not None and int(m.group(2)) > 0,
                  m.group(0) if m else "no graphs line in the log")
        errs = [l for l in text.splitlines() if " error " in l or "cuda" in l.lower()]
        print("\n".join(errs[-8:]))
        shutil.rmtree(work, ignore_errors=True)


main(graphs=True)
main(graphs=False)
print("e2e_cuda: %d failed" % len(fails))
sys.exit(1 if fails else 0)
