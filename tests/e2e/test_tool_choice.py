"""tool_choice forcing a function (named, or "required" with one tool) on
SmolLM2 through the openai client: the reply is the call's arguments,
guided by the function's parameters; no tool_call_parser is configured.
"required" over several tools: the reply is one {"name", "parameters"}
object, guided by an anyOf of the tools told apart by the name."""
import json

import openai
import pytest

from conftest import MODEL

FORECAST = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_forecast", "description": "The weather forecast",
                                      "parameters": FORECAST}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}}}},
]
ASK = [{"role": "user", "content": "What will the weather be in Paris over the next 3 days?"}]
NAMED = {"type": "function", "function": {"name": "get_forecast"}}


def check_args(text):
    v = json.loads(text)
    assert isinstance(v, dict) and set(v) == {"city", "days"}, v
    assert isinstance(v["city"], str) and len(v["city"]) <= 20
    assert isinstance(v["days"], int) and not isinstance(v["days"], bool)


def check_call(choice, finish):
    assert choice.finish_reason == finish, choice
    assert not choice.message.content       # "" as vLLM writes it
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("chatcmpl-tool-")
    assert call.function.name == "get_forecast"
    check_args(call.function.arguments)
    return call.function.arguments


def test_named_tool_choice_stream_equals_non_stream(client):
    kw = dict(model=MODEL, messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=0,
              max_tokens=100)
    args = check_call(client.chat.completions.create(**kw).choices[0], "stop")
    chunks = [c for c in client.chat.completions.create(stream=True, **kw) if c.choices]
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    (opening,) = first.tool_calls
    assert opening.index == 0 and opening.id.startswith("chatcmpl-tool-")
    assert opening.type == "function" and opening.function.name == "get_forecast"
    deltas = []
    for c in chunks[1:]:
        d = c.choices[0].delta
        assert not d.content and not d.role
        for tc in d.tool_calls or []:
            assert tc.index == 0 and tc.id is None and tc.function.name is None
            deltas.append(tc.function.arguments)
    assert "".join(deltas) == args
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_required_with_one_tool_and_n(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS[:1],
                                       tool_choice="required", max_tokens=100, temperature=1.0,
                                       seed=3, n=2)
    assert len(r.choices) == 2
    for c in r.choices:
        check_call(c, "tool_calls")     # OpenAI: "required" ends with "tool_calls"


ANY_TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {key: {"type": "string", "maxLength": 20}},
        "required": [key]}}}
    for name, key in (("get_weather", "city"), ("get_time", "tz"))
]
ANY_KEYS = {"get_weather": "city", "get_time": "tz"}


def test_required_of_several_tools_stream_equals_non_stream(client):
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "What's the weather in Oslo?"}],
              tools=ANY_TOOLS, tool_choice="required", temperature=0, max_tokens=80)
    c = client.chat.completions.create(**kw).choices[0]
    assert c.finish_reason == "tool_calls", c
    assert not c.message.content
    (call,) = c.message.tool_calls
    assert call.type == "function" and call.id.startswith("chatcmpl-tool-")
    key = ANY_KEYS[call.function.name]
    v = json.loads(call.function.arguments)
    assert set(v) == {key} and isinstance(v[key], str) and len(v[key]) <= 20, v

    chunks = [c for c in client.chat.completions.create(stream=True, **kw) if c.choices]
    opened, deltas = [], []
    for ch in chunks:
        d = ch.choices[0].delta
        assert not d.content, d
        for tc in d.tool_calls or []:
            assert tc.index == 0
            if tc.id:   # the opening: once, before any fragment
                assert not opened and not deltas and tc.function.arguments == ""
                opened.append(tc)
            else:
                assert opened and tc.function.name is None
                deltas.append(tc.function.arguments)
    (opening,) = opened
    assert opening.type == "function" and opening.function.name == call.function.name
    assert "".join(deltas) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(ch.choices[0].finish_reason is None for ch in chunks[:-1])


@pytest.mark.parametrize("tools,choice,needle", [
    (TOOLS + TOOLS[:1], "required", "twice"),
    (TOOLS, {"type": "function", "function": {"name": "get_rain"}}, "get_rain"),
])
def test_bad_tool_choice_is_400(client, tools, choice, needle):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, tools=tools, tool_choice=choice,
                                       max_tokens=8)
    assert needle in str(e.value)
