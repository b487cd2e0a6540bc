#!/usr/bin/env python3
"""A plain asyncio streaming client to cross-check zlight-bench's numbers.

Sends N completions of random token ids (same shape as zlight-bench's
random dataset) with max concurrency C, all at once, and prints mean/median
TTFT, TPOT, ITL and E2E latency (ms) and the output token throughput.

  python3 tests/e2e/bench_client.py --port 8000 --num-prompts 16 \
      --input-len 64 --output-len 32 --max-concurrency 8
"""
import argparse
import asyncio
import json
import random
import statistics
import time


async def one(args, model, ids, sem, out):
    async with sem:
        body = json.dumps({"model": model, "prompt": ids, "max_tokens": args.output_len,
                           "stream": True, "ignore_eos": True, "temperature": 0,
                           "stream_options": {"include_usage": True}}).encode()
        t0 = time.perf_counter()
        r, w = await asyncio.open_connection("127.0.0.1", args.port)
        w.write(b"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await w.drain()
        times, usage = [], None
        while True:
            line = await r.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            if ev.get("usage"):
                usage = ev["usage"]
            if ev["choices"] and ev["choices"][0]["text"]:
                times.append(time.perf_counter())
        t1 = time.perf_counter()
        w.close()
        n = usage["completion_tokens"]
        out.append({"ttft": times[0] - t0, "e2e": t1 - t0, "n": n,
                    "tpot": (t1 - times[0]) / (n - 1) if n > 1 else None,
                    "itl": [b - a for a, b in zip(times, times[1:])]})


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model", default="SmolLM2-135M-Instruct")
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--max-concurrency", type=int, default=8)
    args = ap.parse_args()
    rng = random.Random(0)
    sem = asyncio.Semaphore(args.max_concurrency)
    out = []
    t0 = time.perf_counter()
    await asyncio.gather(*(one(args, args.model, [rng.randrange(1000, 20000) for _ in range(args.input_len)],
                                sem, out) for _ in range(args.num_prompts)))
    wall = time.perf_counter() - t0
    ms = lambda xs: "mean %.2f median %.2f" % (1e3 * statistics.mean(xs), 1e3 * statistics.median(xs))
    print("requests %d, duration %.2f s, output %.2f tok/s" % (len(out), wall, sum(o["n"] for o in out) / wall))
    print("TTFT", ms([o["ttft"] for o in out]))
    print("TPOT", ms([o["tpot"] for o in out if o["tpot"] is not None]))
    print("ITL ", ms([x for o in out for x in o["itl"]]))
    print("E2EL", ms([o["e2e"] for o in out]))


asyncio.run(main())
