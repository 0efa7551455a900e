#!/usr/bin/env python3
"""The official `openai` SDK against `llmux serve` with `gateway.tls` (issue
25): HTTPS with HTTP/2 by ALPN (its httpx client with `http2=True`, trusting
the test CA), a whole and a streamed chat completion, and the model list
Cursor verifies with. Started by gateway/tests/run-clients.sh.

Environment: LLMUX_GATEWAY_TLS_URL, LLMUX_GATEWAY_KEY, LLMUX_TEST_CA (the CA's
PEM file). Prints one line per check; exits 1 on the first failure.
"""

from __future__ import annotations

import os
import ssl
import sys

import openai

URL = os.environ["LLMUX_GATEWAY_TLS_URL"]
KEY = os.environ["LLMUX_GATEWAY_KEY"]
CA = os.environ["LLMUX_TEST_CA"]


def check(name: str, cond: bool, detail: object = "") -> None:
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def main() -> None:
    check("the gateway URL is https", URL.startswith("https://"), URL)
    ctx = ssl.create_default_context(cafile=CA)
    http = openai.DefaultHttpxClient(http2=True, verify=ctx)
    oc = openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, http_client=http)
    raw = oc.chat.completions.with_raw_response.create(
        model="demo/oa", messages=[{"role": "user", "content": "hi"}]
    )
    check("openai over TLS: HTTP/2 by ALPN", raw.http_response.http_version == "HTTP/2", raw.http_response.http_version)
    r = raw.parse()
    check("openai over TLS+h2: create", r.choices[0].message.content == "Hello from oa.", r)
    text = ""
    usage = None
    for chunk in oc.chat.completions.create(
        model="demo/oa", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}],
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    check("openai over TLS+h2: stream", text == "Hello from oa.", text)
    check("openai over TLS+h2: usage chunk", usage is not None and usage.completion_tokens > 0, usage)
    models = [m.id for m in oc.models.list()]
    check("openai over TLS+h2: models (Cursor's check)", "demo/oa" in models, models)
    try:
        openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0,
                      http_client=openai.DefaultHttpxClient(http2=True)).models.list()
        check("an untrusted certificate is refused", False, "no error")
    except openai.APIConnectionError:
        check("an untrusted certificate is refused", True)
    print("openai SDK over TLS and HTTP/2 passed")


if __name__ == "__main__":
    main()
