#!/usr/bin/env python3
"""The official `openai`, `anthropic` and `google-genai` SDKs against a running `llmux serve`
in front of the mock fleet (started by gateway/tests/run-clients.sh).

Environment: LLMUX_GATEWAY_URL, LLMUX_GATEWAY_KEY, LLMUX_FLEET (the fleet's
JSON listing). Prints one line per check; exits 1 on the first failure.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import anthropic
import openai
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

URL = os.environ["LLMUX_GATEWAY_URL"]
KEY = os.environ["LLMUX_GATEWAY_KEY"]
# Down first, then the healthy one: the failover must show in the headers.
ORDER = {"provider": {"routing": {"type": "order", "providers": ["down/failover", "oa/failover"]}}}
FLEET = {s["name"]: s["base_url"] for s in json.loads(os.environ["LLMUX_FLEET"])["servers"]}


def fleet_requests(name: str) -> int:
    with urllib.request.urlopen(f"{FLEET[name]}/_mock/requests") as r:
        return len(json.load(r))


def check(name: str, cond: bool, detail: object = "") -> None:
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def openai_sdk() -> None:
    for base in (f"{URL}/api/v1", f"{URL}/v1"):
        oc = openai.OpenAI(base_url=base, api_key=KEY)
        for model, server in (("demo/oa", "oa"), ("demo/an", "an")):
            r = oc.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            check(f"openai create {model} via {base}", r.choices[0].message.content == f"Hello from {server}.", r)
            text = ""
            for chunk in oc.chat.completions.create(
                model=model, stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "hi"}],
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
            check(f"openai stream {model}", text == f"Hello from {server}.", text)
    oc = openai.OpenAI(base_url=f"{URL}/api/v1", api_key=KEY)
    raw = oc.chat.completions.with_raw_response.create(
        model="demo/failover", messages=[{"role": "user", "content": "hi"}], extra_body=ORDER)
    h = raw.headers
    check("openai failover in x-llmux headers",
          h.get("x-llmux-attempts") == "2" and h.get("x-llmux-endpoint") == "oa/failover", dict(h))
    check("openai failover body", raw.parse().choices[0].message.content == "Hello from oa.")
    ids = [m.id for m in oc.models.list()]
    check("openai models.list", "demo/oa" in ids and "demo/an" in ids, ids)
    try:
        openai.OpenAI(base_url=f"{URL}/api/v1", api_key="wrong-key").chat.completions.create(
            model="demo/oa", messages=[{"role": "user", "content": "hi"}])
        check("openai bad key", False, "no error")
    except openai.AuthenticationError as e:
        check("openai bad key -> AuthenticationError", e.status_code == 401)
    before = fleet_requests("limited")
    try:
        oc.chat.completions.create(model="demo/limited", messages=[{"role": "user", "content": "hi"}])
        check("openai 429", False, "no error")
    except openai.RateLimitError as e:
        check("openai 429 -> RateLimitError", e.status_code == 429)
    check("openai: no SDK retry storm", fleet_requests("limited") - before == 1, fleet_requests("limited") - before)
    before = fleet_requests("broken")
    try:
        oc.chat.completions.create(model="demo/broken", messages=[{"role": "user", "content": "hi"}])
        check("openai 5xx", False, "no error")
    except openai.InternalServerError as e:
        check("openai 5xx -> InternalServerError", e.status_code >= 500)
    check("openai 5xx: no SDK retry storm", fleet_requests("broken") - before == 1)


def anthropic_sdk() -> None:
    for base in (f"{URL}/api/anthropic", f"{URL}/anthropic"):
        ac = anthropic.Anthropic(base_url=base, api_key=KEY)
        for model, server in (("demo/an", "an"), ("demo/oa", "oa")):
            m = ac.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
            check(f"anthropic create {model} via {base}", m.content[0].text == f"Hello from {server}.", m)
            with ac.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
                final = s.get_final_message()
            check(f"anthropic stream {model}", final.content[0].text == f"Hello from {server}."
                  and final.stop_reason == "end_turn", final)
    ac = anthropic.Anthropic(base_url=f"{URL}/api/anthropic", auth_token=KEY)
    raw = ac.messages.with_raw_response.create(
        model="demo/failover", max_tokens=64, messages=[{"role": "user", "content": "hi"}], extra_body=ORDER)
    check("anthropic (Bearer) failover in x-llmux headers", raw.headers.get("x-llmux-attempts") == "2", dict(raw.headers))
    n = ac.messages.count_tokens(model="demo/an", system="Be brief.",
                                 messages=[{"role": "user", "content": "count these tokens"}])
    check("anthropic count_tokens", n.input_tokens >= 5, n)
    ids = [m.id for m in ac.models.list()]
    check("anthropic models.list", "demo/an" in ids, ids)
    try:
        anthropic.Anthropic(base_url=f"{URL}/api/anthropic", api_key="wrong-key").messages.create(
            model="demo/an", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        check("anthropic bad key", False, "no error")
    except anthropic.AuthenticationError as e:
        check("anthropic bad key -> AuthenticationError", e.status_code == 401)
    before = fleet_requests("limited")
    try:
        ac.messages.create(model="demo/limited", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        check("anthropic 429", False, "no error")
    except anthropic.RateLimitError as e:
        check("anthropic 429 -> RateLimitError", e.status_code == 429)
    check("anthropic: no SDK retry storm", fleet_requests("limited") - before == 1)
    try:
        ac.messages.create(model="demo/broken", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        check("anthropic 5xx", False, "no error")
    except anthropic.InternalServerError as e:
        check("anthropic 5xx -> InternalServerError", e.status_code >= 500)
    try:
        with ac.messages.stream(model="demo/limited", max_tokens=5, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()
        check("anthropic stream 429", False, "no error")
    except anthropic.RateLimitError:
        check("anthropic stream 429 -> RateLimitError", True)


def responses_sdk() -> None:
    """`client.responses` through /v1/responses: a Responses endpoint (passed
    through), a Chat Completions and an Anthropic endpoint (translated)."""
    for base in (f"{URL}/api/v1", f"{URL}/v1"):
        oc = openai.OpenAI(base_url=base, api_key=KEY)
        for model, server in (("demo/rs", "oa"), ("demo/oa", "oa"), ("demo/an", "an")):
            r = oc.responses.create(model=model, input="hi", instructions="Be brief.")
            check(f"responses create {model} via {base}",
                  r.output_text == f"Hello from {server}." and r.status == "completed"
                  and r.usage is not None and r.usage.output_tokens_details is not None, r)
            with oc.responses.stream(model=model, input=[{"role": "user", "content": "hi"}]) as s:
                final = s.get_final_response()
            check(f"responses stream {model}", final.output_text == f"Hello from {server}.", final)
    oc = openai.OpenAI(base_url=f"{URL}/api/v1", api_key=KEY)
    try:
        oc.responses.create(model="demo/oa", input="hi", store=True)
        check("responses store=true on a Chat endpoint", False, "no error")
    except openai.BadRequestError as e:
        check("responses store=true on a Chat endpoint -> BadRequestError", "store" in str(e))
    before = fleet_requests("limited")
    try:
        oc.responses.create(model="demo/limited", input="hi")
        check("responses 429", False, "no error")
    except openai.RateLimitError as e:
        check("responses 429 -> RateLimitError", e.status_code == 429)
    check("responses: no SDK retry storm", fleet_requests("limited") - before == 1)


def genai_sdk() -> None:
    """google-genai through the Gemini routes: a Gemini endpoint (passed
    through) and a Chat Completions endpoint (translated); v1beta (the
    SDK's default) and v1; generate, stream, count tokens, list models, a
    function-calling round trip and a 429."""
    for base, version in ((URL, "v1beta"), (f"{URL}/api", "v1beta"), (URL, "v1")):
        gc = genai.Client(api_key=KEY, http_options=genai_types.HttpOptions(
            base_url=base, api_version=version, retry_options=genai_types.HttpRetryOptions(attempts=1)))
        where = f"{base} {version}"
        for model, server in (("demo/gm", "gm"), ("demo/oa", "oa")):
            r = gc.models.generate_content(model=model, contents="hi",
                                           config=genai_types.GenerateContentConfig(system_instruction="Be brief."))
            check(f"genai generate {model} via {where}",
                  r.text == f"Hello from {server}." and r.usage_metadata.prompt_token_count == 10, r)
            text = "".join(ch.text or "" for ch in gc.models.generate_content_stream(model=model, contents="hi"))
            check(f"genai stream {model} via {where}", text == f"Hello from {server}.", text)
        n = gc.models.count_tokens(model="demo/gm", contents="how many tokens is this?")
        check(f"genai count_tokens via {where}", (n.total_tokens or 0) > 0, n)
        names = [m.name for m in gc.models.list()]
        check(f"genai list models via {where}", "models/demo/gm" in names, names)
        m = gc.models.get(model="demo/gm")
        check(f"genai get model via {where}", m.name == "models/demo/gm", m)
    gc = genai.Client(api_key=KEY, http_options=genai_types.HttpOptions(
        base_url=URL, retry_options=genai_types.HttpRetryOptions(attempts=1)))
    tool = genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(
        name="run_shell_command", description="Runs a shell command",
        parameters_json_schema={"type": "object", "properties": {"command": {"type": "string"}}})])
    config = genai_types.GenerateContentConfig(tools=[tool])
    for model in ("demo/gc-gm", "demo/gc-oa"):
        ask = genai_types.Content(role="user", parts=[genai_types.Part.from_text(text="run it")])
        r = gc.models.generate_content(model=model, contents=[ask], config=config)
        calls = r.function_calls or []
        check(f"genai function call {model}", len(calls) == 1 and calls[0].name == "run_shell_command"
              and calls[0].args == {"command": "echo llmux-gemini-check"}, r)
        answer = genai_types.Part.from_function_response(name=calls[0].name, response={"output": "llmux-gemini-check"})
        if calls[0].id:
            answer.function_response.id = calls[0].id
        r = gc.models.generate_content(model=model, config=config, contents=[
            ask, r.candidates[0].content, genai_types.Content(role="user", parts=[answer])])
        check(f"genai function response {model} -> final text",
              r.text == "Done: the command printed llmux-gemini-check.", r)
    before = fleet_requests("limited")
    try:
        gc.models.generate_content(model="demo/limited", contents="hi")
        check("genai 429", False, "no error")
    except genai_errors.ClientError as e:
        check("genai 429 -> ClientError RESOURCE_EXHAUSTED", e.code == 429 and e.status == "RESOURCE_EXHAUSTED", e)
    check("genai: no SDK retry storm", fleet_requests("limited") - before == 1)


def keys_sdk() -> None:
    """Key policies (docs/keys.md): a model the key may not call is the SDKs'
    PermissionDeniedError (403), an exhausted budget a 402 APIStatusError
    that is not retried, a rate limit their RateLimitError (429) with
    Retry-After."""
    models_key = os.environ["LLMUX_GATEWAY_KEY_MODELS"]
    broke_key = os.environ["LLMUX_GATEWAY_KEY_BROKE"]
    rpm_key = os.environ["LLMUX_GATEWAY_KEY_RPM"]
    msgs = [{"role": "user", "content": "hi"}]
    oc = openai.OpenAI(base_url=f"{URL}/api/v1", api_key=models_key)
    ac = anthropic.Anthropic(base_url=f"{URL}/api/anthropic", api_key=models_key)
    try:
        oc.chat.completions.create(model="demo/an", messages=msgs)
        check("openai 403 model not allowed", False, "no error")
    except openai.PermissionDeniedError as e:
        check("openai 403 -> PermissionDeniedError", "may not call" in str(e), e)
    try:
        ac.messages.create(model="demo/an", max_tokens=5, messages=msgs)
        check("anthropic 403 model not allowed", False, "no error")
    except anthropic.PermissionDeniedError as e:
        check("anthropic 403 -> PermissionDeniedError", e.body["error"]["type"] == "permission_error", e.body)
    ids = [m.id for m in oc.models.list()]
    check("openai models.list shows only the key's models", ids == ["demo/oa"], ids)
    before = fleet_requests("oa")
    for name, client, call in (
        ("openai", openai.OpenAI(base_url=f"{URL}/api/v1", api_key=broke_key),
         lambda c: c.chat.completions.create(model="demo/oa", messages=msgs)),
        ("anthropic", anthropic.Anthropic(base_url=f"{URL}/api/anthropic", api_key=broke_key),
         lambda c: c.messages.create(model="demo/oa", max_tokens=5, messages=msgs)),
        ("responses", openai.OpenAI(base_url=f"{URL}/api/v1", api_key=broke_key),
         lambda c: c.responses.create(model="demo/oa", input="hi")),
    ):
        sdk = anthropic if name == "anthropic" else openai
        try:
            call(client)
            check(f"{name} 402 budget", False, "no error")
        except sdk.APIStatusError as e:
            check(f"{name} 402 -> APIStatusError, budget message",
                  e.status_code == 402 and "budget exhausted" in str(e)
                  and e.response.headers.get("x-should-retry") == "false", e)
    check("402: nothing reached the upstream, no SDK retry", fleet_requests("oa") == before)
    # max_retries=0: the SDKs would otherwise wait out the Retry-After.
    oc = openai.OpenAI(base_url=f"{URL}/api/v1", api_key=rpm_key, max_retries=0)
    oc.chat.completions.create(model="demo/oa", messages=msgs)
    try:
        oc.chat.completions.create(model="demo/oa", messages=msgs)
        check("openai 429 rpm", False, "no error")
    except openai.RateLimitError as e:
        ra = int(e.response.headers["retry-after"])
        check("openai 429 -> RateLimitError with Retry-After", 0 < ra <= 60
              and e.response.headers.get("x-should-retry") == "true", ra)
    ac = anthropic.Anthropic(base_url=f"{URL}/api/anthropic", api_key=rpm_key, max_retries=0)
    try:
        ac.messages.create(model="demo/oa", max_tokens=5, messages=msgs)
        check("anthropic 429 rpm", False, "no error")
    except anthropic.RateLimitError as e:
        check("anthropic 429 -> RateLimitError", e.body["error"]["type"] == "rate_limit_error", e.body)
    with urllib.request.urlopen(urllib.request.Request(
            f"{URL}/api/v1/key", headers={"Authorization": f"Bearer {broke_key}"})) as r:
        data = json.load(r)["data"]
    check("/api/v1/key in OpenRouter's shape", data["label"] == "broke" and data["limit"] == 0
          and data["limit_remaining"] == 0 and data["period"] == "day", data)


if __name__ == "__main__":
    openai_sdk()
    anthropic_sdk()
    responses_sdk()
    genai_sdk()
    if "LLMUX_GATEWAY_KEY_MODELS" in os.environ:
        keys_sdk()
    print("gateway SDK checks passed")
