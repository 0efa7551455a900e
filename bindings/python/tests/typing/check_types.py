"""Static type check, run by `mypy --strict` (packaging/test-python.sh and
run-tests.sh), not by pytest: the response objects' declared types are the
ones an editor shows, down to the leaves."""

from typing import Any, Dict, List, Optional

from typing_extensions import assert_type

import llmux


def chat(router: llmux.Router) -> None:
    resp = router.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert_type(resp, llmux.ChatCompletion)
    assert_type(resp.choices, List[llmux.Choice])
    assert_type(resp.choices[0].message, llmux.ChatCompletionMessage)
    assert_type(resp.choices[0].message.content, Optional[str])
    assert_type(resp.choices[0].finish_reason, Optional[str])
    calls = resp.choices[0].message.tool_calls or []
    assert_type(calls[0].function.arguments, str)
    assert_type(resp.usage, Optional[llmux.CompletionUsage])
    assert_type(resp.routing, llmux.Routing)
    assert_type(resp.routing.endpoint, Optional[str])
    assert_type(resp.routing.attempts[0].status, Optional[int])
    assert_type(resp.routing.cost_usd, Optional[float])
    assert_type(resp.to_dict(), Dict[str, Any])

    with router.chat.completions.create(model="m", messages=[], stream=True) as stream:
        for chunk in stream:
            assert_type(chunk, llmux.ChatCompletionChunk)
            assert_type(chunk.choices[0].delta.content, Optional[str])
    assert_type(stream.routing, Optional[llmux.Routing])


def messages(router: llmux.Router) -> None:
    msg = router.messages.create(model="m", max_tokens=16, messages=[])
    assert_type(msg, llmux.Message)
    assert_type(msg.content[0].text, Optional[str])
    assert_type(msg.usage.output_tokens, int)
    for event in router.messages.create(model="m", max_tokens=16, messages=[], stream=True):
        assert_type(event, llmux.MessageStreamEvent)
        assert_type(event.type, str)
        if event.delta is not None:
            assert_type(event.delta.text, Optional[str])


async def asynchronous(router: llmux.AsyncRouter) -> None:
    resp = await router.chat.completions.create(model="m", messages=[])
    assert_type(resp.choices[0].message.content, Optional[str])
