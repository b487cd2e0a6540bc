"""Structured output (guided JSON) on SmolLM2 through the openai client:
response_format json_object / json_schema and vLLM's guided_json.  Replies
that end (finish_reason "stop") must parse and match their schema; the
checks below are written out for the keywords each schema uses."""
import concurrent.futures
import json

import openai
import pytest

from conftest import MODEL

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "role": {"enum": ["engineer", "artist", "doctor"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
        "email": {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}]},
    },
    "required": ["name", "age", "role", "tags", "email"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Describe a person as JSON with name, age, role, tags and email."}]


def check_person(v):
    assert isinstance(v, dict) and set(v) == set(PERSON["properties"]), v
    assert isinstance(v["name"], str) and len(v["name"]) <= 24
    assert isinstance(v["age"], int) and not isinstance(v["age"], bool)
    assert v["role"] in ("engineer", "artist", "doctor")
    assert isinstance(v["tags"], list) and len(v["tags"]) <= 3
    assert all(isinstance(t, str) and len(t) <= 10 for t in v["tags"])
    assert v["email"] is None or (isinstance(v["email"], str) and len(v["email"]) <= 40)


def person_format():
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


@pytest.mark.parametrize("temperature,seed", [(0, None), (0.9, 1), (0.9, 2), (1.3, 3)])
def test_json_schema_replies_match(client, temperature, seed):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=300,
                                       temperature=temperature, seed=seed,
                                       response_format=person_format())
    c = r.choices[0]
    assert c.finish_reason == "stop", c.message.content
    check_person(json.loads(c.message.content))


def test_json_object_mode(client):
    for seed in (5, 6, 7):
        r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=400,
                                           temperature=0.8, seed=seed,
                                           response_format={"type": "json_object"})
        c = r.choices[0]
        if c.finish_reason == "stop":
            assert isinstance(json.loads(c.message.content), dict)
        else:   # cut by max_tokens: a prefix of an object, never anything else
            assert c.finish_reason == "length" and c.message.content.lstrip().startswith("{")


def test_stream_equals_non_stream_and_n(client):
    kw = dict(model=MODEL, messages=ASK, max_tokens=300, temperature=0,
              response_format=person_format())
    full = client.chat.completions.create(**kw).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or ""
                       for c in client.chat.completions.create(stream=True, **kw) if c.choices)
    assert streamed == full
    kw.update(temperature=1.0, seed=11, n=2)
    for c in client.chat.completions.create(**kw).choices:
        assert c.finish_reason == "stop"
        check_person(json.loads(c.message.content))


def test_guided_json_on_completions(client):
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4}
    r = client.completions.create(model=MODEL, prompt="Some prime numbers as a JSON list:",
                                  max_tokens=60, temperature=0, extra_body={"guided_json": schema})
    c = r.choices[0]
    assert c.finish_reason == "stop", c.text
    v = json.loads(c.text)
    assert isinstance(v, list) and 2 <= len(v) <= 4 and all(isinstance(x, int) for x in v)


def test_guided_rows_leave_other_rows_alone(client):
    plain = dict(model=MODEL, prompt="The sky is", max_tokens=16, temperature=0)
    alone = client.completions.create(**plain).choices[0].text
    guided = dict(model=MODEL, messages=ASK, max_tokens=200, temperature=0.7, seed=4,
                  response_format=person_format())
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        gs = [ex.submit(client.chat.completions.create, **guided) for _ in range(3)]
        beside = ex.submit(client.completions.create, **plain)
        assert beside.result().choices[0].text == alone
        for g in gs:
            check_person(json.loads(g.result().choices[0].message.content))


@pytest.mark.parametrize("fmt,needle", [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "a+"}}},
     "pattern"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}},
     "missing"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "schema"),
    ({"type": "yaml"}, "yaml"),
])
def test_bad_formats_are_400(client, fmt, needle):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, response_format=fmt)
    assert needle in str(e.value)
