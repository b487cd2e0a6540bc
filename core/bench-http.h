/* zlight-bench's HTTP load generator (like `vllm bench serve`): streams
 * requests to a running zlightd (or any OpenAI-compatible server) and
 * reports TTFT, TPOT, ITL and E2E latency and the throughputs.
 *
 *   zlight-bench --base-url http://127.0.0.1:8000 --num-prompts 200 \
 *                --random-input-len 128 --random-output-len 64 \
 *                --request-rate 8 --max-concurrency 32 --result-file out.json
 */
#ifndef ZLIGHT_BENCH_HTTP_H
#define ZLIGHT_BENCH_HTTP_H

/* Runs the benchmark with zlight-bench's argv (without --offline); returns
 * the process exit status (0 ok, 1 failed requests or I/O, 2 usage). */
int zl_bench_http_main(int argc, char **argv);

#endif
