"""zlightd end to end with the real `openai` client on SmolLM2 (CPU)."""
import concurrent.futures
import json
import socket
import time

import openai
import pytest

from conftest import MODEL, WARMUP_TOKENS, request

CHAT = [{"role": "user", "content": "Name three colors."}]


def metric(url, name):
    for line in request(url, "GET", "/metrics")[1].splitlines():
        if line.startswith("zlight:" + name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_warmup_ran_and_is_not_counted(url, server_log):
    """engine.warmup_tokens (conftest) ran before /health answered, and
    /metrics counts none of it; first in the file, so no client came yet."""
    if server_log is None:
        pytest.skip("external server")
    with open(server_log, errors="replace") as f:
        log = f.read()
    assert "warm-up: a %d-token prompt and one decode step" % WARMUP_TOKENS in log, log[-2000:]
    for name in ("prompt_tokens_total", "generation_tokens_total", "engine_steps_total",
                 "prefix_cache_queries_total", "num_requests_running"):
        assert metric(url, name) == 0, name


def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_stream_equals_non_stream(client):
    full = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=24, temperature=0)
    text = full.choices[0].message.content
    assert text and full.choices[0].message.role == "assistant"
    assert full.usage.completion_tokens <= 24
    stream = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=24, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    content = [c for c in chunks if c.choices]
    assert content[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in content[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in content) == text


def test_completion_stream_equals_non_stream(client):
    kw = dict(model=MODEL, prompt="The capital of France is", max_tokens=16, temperature=0)
    full = client.completions.create(**kw)
    assert full.choices[0].finish_reason == "length"
    assert full.usage.completion_tokens == 16
    text = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
    assert text == full.choices[0].text


def test_stop_string(client):
    kw = dict(model=MODEL, prompt="Count: 1, 2, 3, 4,", max_tokens=24, temperature=0)
    text = client.completions.create(**kw).choices[0].text
    assert len(text) > 4
    stop = text[3:5]
    r = client.completions.create(stop=[stop], **kw)
    assert r.choices[0].finish_reason == "stop"
    assert stop not in r.choices[0].text
    assert text.startswith(r.choices[0].text)


def test_include_stop_str_in_output(client):
    kw = dict(model=MODEL, prompt="Count: 1, 2, 3, 4,", max_tokens=24, temperature=0)
    text = client.completions.create(**kw).choices[0].text
    stop = text[3:5]
    r = client.completions.create(stop=[stop], extra_body={"include_stop_str_in_output": True}, **kw)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == text[:text.index(stop) + len(stop)]


def test_eos_text_and_skip_special_tokens(client):
    """vLLM's rules: EOS ends the text unseen; include_stop_str_in_output
    adds its text, which skip_special_tokens (on by default) then drops."""
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=48,
              temperature=0)
    base = client.chat.completions.create(**kw).choices[0]
    assert base.finish_reason == "stop", "SmolLM2 answers 'Say hi.' within 48 tokens"
    text = base.message.content

    def content(**extra):
        return client.chat.completions.create(extra_body=extra, **kw).choices[0].message.content

    assert content(include_stop_str_in_output=True, skip_special_tokens=False) == text + "<|im_end|>"
    assert content(include_stop_str_in_output=True) == text
    assert content(skip_special_tokens=False) == text
    # past EOS the model writes the template's special tokens: kept only when asked
    kw["max_tokens"] = 64
    kept = content(ignore_eos=True, skip_special_tokens=False)
    assert kept.startswith(text + "<|im_end|>")
    plain = kept
    for special in ("<|im_end|>", "<|im_start|>", "<|endoftext|>"):
        plain = plain.replace(special, "")
    assert content(ignore_eos=True) == plain


def test_echo_logprobs_score_the_prompt(client, url, auth):
    """echo + logprobs (lm-evaluation-harness's loglikelihood request): each
    prompt token's logprob, checked against the logprob the sampler gives
    that token when a logit bias forces it after the same prefix (the
    sampler reports the raw logits' logprobs).  1e-4 (1e-6 seen): the prompt's rows are
    computed in one 7-row prefill, the forced ones in shorter ones."""
    prompt = "The capital of France is Paris"
    status, body = request(url, "POST", "/tokenize", json.dumps({"model": MODEL, "prompt": prompt}),
                           auth)
    assert status == 200, body
    ids = json.loads(body)["tokens"]
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0,
                                  echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith(prompt)
    assert len(lp.tokens) == len(ids) + 1
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x <= 0 for x in lp.token_logprobs[1:])
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    for j in range(1, len(ids)):
        f = client.completions.create(model=MODEL, prompt=ids[:j], max_tokens=1, temperature=0,
                                      logprobs=1, logit_bias={str(ids[j]): 100})
        forced = f.choices[0].logprobs
        assert forced.tokens[0] == lp.tokens[j]
        assert abs(forced.token_logprobs[0] - lp.token_logprobs[j]) < 1e-4, j
        assert forced.top_logprobs[0].keys() == lp.top_logprobs[j].keys(), j
        # lm-evaluation-harness calls a token greedy when its logprob == the top one's
        if lp.tokens[j] in lp.top_logprobs[j]:
            assert lp.token_logprobs[j] == max(lp.top_logprobs[j].values()), j
    # max_tokens 0 (vLLM's echo without generation): the prompt alone, scored the same
    r0 = client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, temperature=0,
                                   echo=True, logprobs=1)
    assert r0.choices[0].text == prompt and r0.usage.completion_tokens == 0
    assert r0.choices[0].logprobs.tokens == lp.tokens[:len(ids)]
    assert r0.choices[0].logprobs.token_logprobs == lp.token_logprobs[:len(ids)]
    stream = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0,
                                       echo=True, logprobs=1, stream=True)
    tokens = [t for c in stream if c.choices and c.choices[0].logprobs
              for t in c.choices[0].logprobs.tokens]
    assert tokens == lp.tokens


def test_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 4 and len(lp.token_logprobs) == 4
    assert all(x <= 0 for x in lp.token_logprobs)
    assert all(1 <= len(t) <= 2 for t in lp.top_logprobs)
    c = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=4, temperature=0,
                                       logprobs=True, top_logprobs=3)
    content = c.choices[0].logprobs.content
    assert len(content) == c.usage.completion_tokens
    assert all(len(t.top_logprobs) == 3 for t in content)
    # greedy: the chosen token is the most likely one
    assert all(t.logprob >= t.top_logprobs[0].logprob - 1e-4 for t in content)


def test_n_and_seed(client):
    kw = dict(model=MODEL, messages=CHAT, max_tokens=12, temperature=1.0, seed=1234)
    a = client.chat.completions.create(n=2, **kw)
    assert len(a.choices) == 2 and {c.index for c in a.choices} == {0, 1}
    b = client.chat.completions.create(n=2, **kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]


def test_concurrent_equals_sequential(client):
    prompts = ["Once upon a time", "The sky is", "def add(a, b):", "1 + 1 =", "Water boils at"]
    run = lambda p: client.completions.create(model=MODEL, prompt=p, max_tokens=12, temperature=0).choices[0].text
    seq = [run(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as ex:
        par = list(ex.map(run, prompts))
    assert par == seq


def test_loglikelihood_request_as_lm_eval_sends_it(url, auth):
    """lm-evaluation-harness's local-completions loglikelihood request: the
    context and continuation as token ids, echo, logprobs 1, max_tokens 1,
    temperature 0, a seed; it sums token_logprobs[ctxlen:-1] and calls the
    continuation greedy when each of those equals its top entry.  A
    continuation of the model's own greedy tokens must come out greedy."""
    def tokenize(text):
        status, body = request(url, "POST", "/tokenize",
                               json.dumps({"prompt": text, "add_special_tokens": False}), auth)
        assert status == 200, body
        return json.loads(body)["tokens"]

    ctx = tokenize("The capital of France is")
    status, body = request(url, "POST", "/v1/completions", json.dumps(
        {"model": MODEL, "prompt": ctx, "max_tokens": 3, "temperature": 0}), auth)
    cont = tokenize(json.loads(body)["choices"][0]["text"])
    assert cont, body
    status, body = request(url, "POST", "/v1/completions", json.dumps(
        {"model": MODEL, "prompt": [ctx + cont, ctx + [cont[0] + 1]], "temperature": 0,
         "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True}), auth)
    assert status == 200, body
    choices = sorted(json.loads(body)["choices"], key=lambda c: c["index"])
    results = []
    for c in choices:
        lps = c["logprobs"]["token_logprobs"][len(ctx):-1]
        tops = c["logprobs"]["top_logprobs"][len(ctx):-1]
        results.append((sum(lps), all(lp == max(t.values()) for lp, t in zip(lps, tops))))
    assert results[0][1], "the model's own greedy continuation is greedy"
    assert not results[1][1], "another token is not"
    assert results[0][0] <= 0 and results[1][0] < 0


def test_concurrent_echo_logprobs_equal_sequential(client):
    """Prompts scored together (their rows sharing steps with each other's
    and with generating requests) score as they do alone, within 1e-4."""
    prompts = ["Once upon a time there was", "The sky is blue because", "def add(a, b):\n    return",
               "1 + 1 = 2, and 2 + 2 ="]
    kw = dict(model=MODEL, max_tokens=4, temperature=0, echo=True, logprobs=2)
    run = lambda p: client.completions.create(prompt=p, **kw).choices[0].logprobs
    seq = [run(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(len(prompts) + 1) as ex:
        busy = ex.submit(client.completions.create, model=MODEL, prompt="Tell me a story.",
                         max_tokens=48, temperature=0)
        par = list(ex.map(run, prompts))
        busy.result()
    for a, b in zip(seq, par):
        assert a.tokens == b.tokens
        assert a.token_logprobs[0] is None and b.token_logprobs[0] is None
        assert all(abs(x - y) < 1e-4 for x, y in zip(a.token_logprobs[1:], b.token_logprobs[1:]))


def test_max_tokens_length(client):
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_completion_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3


@pytest.mark.parametrize("body,status", [
    ("{not json", 400),
    ('{"prompt": 5}', 400),
    ('{"prompt": "a", "temperature": -1}', 400),
    ('{"prompt": "a", "max_tokens": "many"}', 400),
    ('{"prompt": "a", "n": 0}', 400),
    ('{"prompt": "a", "top_p": 1e999}', 400),
    ('{"prompt": "a", "suffix": "b"}', 400),
    ('{"model": "nope", "prompt": "a"}', 404),
    ('{"max_tokens": 3}', 400),
    (b'{"prompt": "\xff\xfe"}', 400),
])
def test_bad_requests(url, auth, body, status):
    code, text = request(url, "POST", "/v1/completions", body, auth)
    assert code == status, text
    err = json.loads(text)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]


def test_errors_through_the_client(client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="a", max_tokens=1)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="a " * 600, max_tokens=10)
    assert "maximum context length is 512 tokens. However, you requested" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=1)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).models.list()


def test_oversized_body_and_unknown_route(url, auth):
    assert request(url, "POST", "/v1/completions", "{" + " " * 70000 + "}", auth)[0] == 413
    assert request(url, "GET", "/v1/nothing", None, auth)[0] == 404
    assert request(url, "GET", "/health")[0] == 200


def test_tokenizer_info_as_lm_eval_reads_it(url, auth):
    """lm-evaluation-harness's remote tokenizer: GET /tokenizer_info must
    name eos_token, and POST /tokenize must answer its test payload."""
    status, body = request(url, "GET", "/tokenizer_info")
    assert status == 200, body
    info = json.loads(body)
    assert info["eos_token"] == "<|im_end|>" and "im_start" in info["chat_template"]
    status, body = request(url, "POST", "/tokenize",
                           json.dumps({"prompt": "test", "add_special_tokens": False}), auth)
    assert status == 200 and isinstance(json.loads(body)["tokens"], list), body


def test_tokenize_detokenize_version_metrics(url, auth):
    t = json.loads(request(url, "POST", "/tokenize", json.dumps({"prompt": "Hello world"}))[1])
    assert t["count"] == len(t["tokens"]) > 0
    d = json.loads(request(url, "POST", "/detokenize", json.dumps({"tokens": t["tokens"]}))[1])
    assert d["prompt"] == "Hello world"
    assert "version" in json.loads(request(url, "GET", "/version")[1])
    text = request(url, "GET", "/metrics")[1]
    assert "# TYPE zlight:e2e_request_latency_seconds histogram" in text


def test_max_total_tokens_sizes_the_kv_pool(url):
    """engine.max_total_tokens: 4096 in 16-token blocks is a pool of 256."""
    assert metric(url, "kv_cache_blocks") == 256


def test_metrics_pass_promtool(url):
    """/metrics parses as Prometheus text; the only lint allowed is the colon
    of the `zlight:` prefix the naming scheme asks for (vLLM's `vllm:` too)."""
    import shutil
    import subprocess
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    text = request(url, "GET", "/metrics")[1]
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    out = (r.stdout + r.stderr).decode()
    problems = [line for line in out.splitlines()
                if line.strip() and not line.endswith("metric names should not contain ':'")]
    assert "error" not in out.lower(), out
    assert not problems, out


def test_disconnect_cancels_and_frees_kv(url, auth):
    body = json.dumps({"model": MODEL, "prompt": "Tell me a long story.", "max_tokens": 400,
                       "temperature": 0, "ignore_eos": True, "stream": True}).encode()
    port = int(url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: " + auth["Authorization"].encode() + b"\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(4096)
    s.close()
    deadline = time.time() + 10
    while time.time() < deadline and (metric(url, "num_requests_running") or metric(url, "kv_cache_usage_perc")):
        time.sleep(0.1)
    assert metric(url, "num_requests_running") == 0
    assert metric(url, "kv_cache_usage_perc") == 0


def test_sigterm_exits_zero(server):
    # last on purpose (pytest runs tests in file order)
    url, proc = server
    if proc is None:
        pytest.skip("external server")
    proc.terminate()
    assert proc.wait(timeout=30) == 0
