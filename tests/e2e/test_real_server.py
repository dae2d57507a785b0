"""The real llama-server with the cached 0.5B model (`webscale-rl setup`): it answers a JSON-schema
constrained request, and stops (process gone, port free) when its `with` block ends, also by an exception."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.support.processes import process_gone
from webscale_rl.config import LocalLLMConfig
from webscale_rl.llm.local_server import LocalLLMServer, port_is_free

SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "maxLength": 200},
        "answer": {"type": "string", "maxLength": 60},
        "difficulty": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
    },
    "required": ["question", "answer", "difficulty"],
    "additionalProperties": False,
}


@pytest.mark.real_model
@pytest.mark.timeout(900)
def test_real_server_json_schema_and_stop():
    cfg = LocalLLMConfig()
    with LocalLLMServer(cfg) as srv:
        pid, port = srv.process.pid, srv.port
        client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0, timeout=120)
        resp = client.chat.completions.create(
            model=srv.model_name,
            temperature=0,
            max_tokens=160,
            messages=[
                {"role": "system", "content": "You write one question-answer pair about a text, as JSON."},
                {
                    "role": "user",
                    "content": "Text: The Eiffel Tower in Paris was completed in 1889 and is 330 metres tall.\nWrite a question whose answer is a short fact.",
                },
            ],
            response_format={"type": "json_schema", "json_schema": {"name": "qa", "schema": SCHEMA, "strict": True}},
        )
        obj = json.loads(resp.choices[0].message.content)
        jsonschema.validate(obj, SCHEMA)
    assert process_gone(pid) and port_is_free(port)


@pytest.mark.real_model
@pytest.mark.timeout(600)
def test_real_server_stopped_by_exception_in_with():
    with pytest.raises(KeyboardInterrupt):
        with LocalLLMServer(LocalLLMConfig()) as srv:
            pid, port = srv.process.pid, srv.port
            raise KeyboardInterrupt
    assert process_gone(pid) and port_is_free(port)
