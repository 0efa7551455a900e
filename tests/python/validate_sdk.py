#!/usr/bin/env python3
"""Validate llmux's payloads against the official `openai`, `anthropic` and
`google-genai` Python packages.

Input: the JSON-lines file written by `tests/sdk_payloads.rs`, one case per
line: {"case", "caller", "upstream", "stream", "request", "chunks",
"terminal", "expect": {"text", "tool_calls": [{"name", "arguments"}],
"error_status", "thinking"}}.

For every case, every payload a client of the caller's protocol would see is
validated with the SDK's own pydantic models in strict JSON mode, checked for
fields the model does not know (only llmux's documented extensions are
allowed), and streams are fed through the SDK's own accumulators
(`ChatCompletionStreamState` for OpenAI, `accumulate_event` for Anthropic,
`ResponseStreamState` -- what `client.responses.stream` runs -- for
Responses, whose events are validated as `ResponseStreamEvent`; Gemini
chunks are each a `GenerateContentResponse`, read with the SDK's own
`function_calls` accessor; google-genai's models forbid unknown fields).
The result must carry exactly the text, thinking and tool calls the upstream
sent. Error terminals must validate as the protocol's error body and map to
the right SDK exception class.

Prints one line per failure and a closing `N passed, M failed` line; exits 1
when anything failed (2 on a usage error).
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, Callable, get_args

import pydantic
from pydantic import TypeAdapter

import openai
import anthropic
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject as OpenAIErrorObject
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse as AnthropicErrorResponse, ErrorType as AnthropicErrorType
from anthropic.lib.streaming._messages import accumulate_event, build_events
import google.genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

# Fields outside the SDK models that llmux emits on purpose (documented in
# src/protocol/translate.rs): thinking text for OpenAI callers, in the
# DeepSeek/vLLM convention. Keyed by the model class name holding the field.
ALLOWED_EXTRAS = {
    ("ChatCompletionMessage", "reasoning_content"),
    ("ChoiceDelta", "reasoning_content"),
}

# What each HTTP status must become in the SDKs (their own exception mapping).
OPENAI_EXC = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
              404: "NotFoundError", 409: "ConflictError", 422: "UnprocessableEntityError",
              429: "RateLimitError"}
ANTHROPIC_TYPE_FOR_STATUS = {400: "invalid_request_error", 401: "authentication_error",
                             403: "permission_error", 404: "not_found_error",
                             413: "request_too_large", 429: "rate_limit_error",
                             500: "api_error", 529: "overloaded_error"}


class CaseFailure(Exception):
    pass


class Checker:
    """Collects the checks of one case; the first failure ends the case."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checks = 0

    def ok(self, cond: bool, what: str) -> None:
        self.checks += 1
        if not cond:
            raise CaseFailure(what)

    def eq(self, got: Any, want: Any, what: str) -> None:
        self.ok(got == want, f"{what}: got {got!r}, want {want!r}")

    def strict(self, model: Any, data: Any, where: str, extras: bool = True) -> Any:
        """Validates `data` (parsed JSON) with a model class or TypeAdapter in
        strict JSON mode, then the lax Python mode the SDK's own parser is
        closest to; both must pass. With `extras`, keys the SDK model does not
        declare are failures too (see ALLOWED_EXTRAS)."""
        self.checks += 1
        raw = json.dumps(data)
        try:
            if isinstance(model, TypeAdapter):
                model.validate_json(raw, strict=True)
                obj = model.validate_python(data)
            else:
                model.model_validate_json(raw, strict=True)
                obj = model.model_validate(data)
        except pydantic.ValidationError as e:
            name = getattr(model, "__name__", None) or repr(model)
            raise CaseFailure(f"{where}: not a valid {name}: {e}") from None
        if extras:
            self.no_unknown_fields(obj, where)
        self.required_present(obj, where)
        return obj

    def no_unknown_fields(self, obj: Any, where: str) -> None:
        """Every key must be a field of the SDK model, except ALLOWED_EXTRAS."""
        self.checks += 1
        for path, node in walk(obj, where):
            extra = node.model_extra or {}
            for key in extra:
                if (type(node).__name__, key) not in ALLOWED_EXTRAS:
                    raise CaseFailure(
                        f"{path}: field {key!r} is not in the SDK model {type(node).__name__}"
                        f" (fields: {sorted(type(node).model_fields)})")

    def required_present(self, obj: Any, where: str) -> None:
        """Every field the SDK model declares required was actually given
        (also for objects built by the SDK's accumulators, which skip
        validation)."""
        self.checks += 1
        for path, node in walk(obj, where):
            fields = type(node).model_fields
            required = {n for n, f in fields.items() if f.is_required()}
            missing = required - set(node.model_fields_set)
            if missing:
                raise CaseFailure(
                    f"{path}: {type(node).__name__} lacks required field(s) {sorted(missing)}")


def walk(obj: Any, path: str):
    """Yields (path, model) for every pydantic model inside obj."""
    if isinstance(obj, pydantic.BaseModel):
        yield path, obj
        for name in type(obj).model_fields:
            yield from walk(getattr(obj, name, None), f"{path}.{name}")
        for name, v in (obj.model_extra or {}).items():
            yield from walk(v, f"{path}.{name}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from walk(v, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, f"{path}.{k}")


def args_equal(c: Checker, got_args: str, want_args: str, what: str) -> None:
    try:
        got = json.loads(got_args)
    except ValueError as e:
        raise CaseFailure(f"{what}: arguments {got_args!r} are not JSON: {e}") from None
    c.eq(got, json.loads(want_args), what)


# ---------------------------------------------------------------------------
# OpenAI caller

def openai_message_content(c: Checker, msg: Any, expect: dict, where: str) -> None:
    want_text = expect["text"]
    if want_text == "" and expect["tool_calls"]:
        c.ok(msg.content in (None, ""), f"{where}.content: want none, got {msg.content!r}")
    else:
        c.eq(msg.content, want_text, f"{where}.content")
    extra = msg.model_extra or {}
    c.eq(extra.get("reasoning_content") or "", expect.get("thinking") or "",
         f"{where}.reasoning_content")
    calls = msg.tool_calls or []
    c.eq([t.function.name for t in calls], [t["name"] for t in expect["tool_calls"]],
         f"{where}.tool_calls names")
    for i, (t, want) in enumerate(zip(calls, expect["tool_calls"])):
        c.eq(t.type, "function", f"{where}.tool_calls[{i}].type")
        c.ok(bool(t.id), f"{where}.tool_calls[{i}].id is empty")
        args_equal(c, t.function.arguments, want["arguments"], f"{where}.tool_calls[{i}].arguments")
    c.ok(len({t.id for t in calls}) == len(calls), f"{where}: tool call ids are not unique")


def finish_for(expect: dict) -> str:
    return "tool_calls" if expect["tool_calls"] else "stop"


def check_openai_nonstream(c: Checker, case: dict) -> None:
    t, expect = case["terminal"], case["expect"]
    c.eq(case["chunks"], [], "chunks of a non-streaming request")
    raw = t.get("response")
    c.ok(isinstance(raw, dict), "done event has no `response` object")
    comp = c.strict(ChatCompletion, raw, "response")
    # Round trip: what the SDK model holds dumps back to the same JSON.
    dumped = comp.model_dump(mode="json", exclude_unset=True)
    c.eq(dumped, raw, "response model_dump round trip")
    again = ChatCompletion.model_validate(dumped)
    c.eq(again, comp, "response re-validated from its dump")
    c.eq(comp.object, "chat.completion", "response.object")
    c.ok(len(comp.choices) == 1, f"response has {len(comp.choices)} choices, want 1")
    choice = comp.choices[0]
    c.eq(choice.index, 0, "choices[0].index")
    c.eq(choice.finish_reason, finish_for(expect), "choices[0].finish_reason")
    c.eq(choice.message.role, "assistant", "choices[0].message.role")
    openai_message_content(c, choice.message, expect, "choices[0].message")
    c.ok(comp.usage is not None, "response.usage is missing")
    u = comp.usage
    c.eq(u.total_tokens, u.prompt_tokens + u.completion_tokens, "usage.total_tokens")


def check_openai_stream(c: Checker, case: dict) -> None:
    t, expect, chunks = case["terminal"], case["expect"], case["chunks"]
    c.ok(len(chunks) > 0, "no chunks")
    c.ok(t.get("response") is None, "done event of a stream carries a response")
    tools = (case.get("request") or {}).get("tools") or []
    state = ChatCompletionStreamState(input_tools=tools)
    events = []
    finishes = []
    ids = set()
    usage_chunks = 0
    for i, raw in enumerate(chunks):
        chunk = c.strict(ChatCompletionChunk, raw, f"chunks[{i}]")
        c.eq(chunk.object, "chat.completion.chunk", f"chunks[{i}].object")
        ids.add(chunk.id)
        if not chunk.choices:
            c.ok(chunk.usage is not None, f"chunks[{i}]: no choices and no usage")
            usage_chunks += 1
        for ch in chunk.choices:
            c.eq(ch.index, 0, f"chunks[{i}].choices[].index")
            if ch.finish_reason is not None:
                finishes.append(ch.finish_reason)
            for tc in ch.delta.tool_calls or []:
                c.ok(tc.index is not None, f"chunks[{i}]: tool call fragment without index")
        events.extend(state.handle_chunk(chunk))
    c.eq(len(ids), 1, "chunk ids (one per stream)")
    c.eq(finishes, [finish_for(expect)], "finish_reason(s) over the stream")
    include_usage = ((case.get("request") or {}).get("stream_options") or {}).get("include_usage")
    c.eq(usage_chunks, 1 if include_usage else 0, "usage chunks (include_usage)")
    if include_usage:
        c.ok(not chunks[-1]["choices"], "the usage chunk is not the last chunk")

    final = state.get_final_completion()
    c.required_present(final, "final completion")
    # The accumulated completion must itself be a valid ChatCompletion.
    dumped = final.model_dump(mode="json", exclude_unset=True)
    for choice in dumped.get("choices", []):
        choice.get("message", {}).pop("parsed", None)
        for tc in choice.get("message", {}).get("tool_calls") or []:
            tc.get("function", {}).pop("parsed_arguments", None)
    # (The accumulator keeps each tool call's stream `index` in the snapshot,
    # a field ChatCompletion does not declare: unknown fields are not checked
    # here; every chunk was checked above.)
    comp = c.strict(ChatCompletion, dumped, "final completion", extras=False)
    c.ok(len(comp.choices) == 1, "final completion has one choice")
    c.eq(comp.choices[0].finish_reason, finish_for(expect), "final finish_reason")
    openai_message_content(c, comp.choices[0].message, expect, "final message")
    if include_usage:
        c.ok(comp.usage is not None, "final completion lost the usage")

    # The SDK's own higher-level events agree with the accumulated result.
    kinds = [e.type for e in events]
    text = "".join(e.delta for e in events if e.type == "content.delta")
    c.eq(text, expect["text"], "content.delta events")
    done_args = [(e.name, e.arguments) for e in events
                 if e.type == "tool_calls.function.arguments.done"]
    c.eq([n for n, _ in done_args], [x["name"] for x in expect["tool_calls"]],
         "tool_calls.function.arguments.done events")
    for (n, a), want in zip(done_args, expect["tool_calls"]):
        args_equal(c, a, want["arguments"], f"arguments.done event for {n}")
    if expect["text"]:
        c.eq(kinds.count("content.done"), 1, "content.done events")


def check_openai_error(c: Checker, case: dict) -> None:
    t, expect = case["terminal"], case["expect"]
    c.eq(t.get("type"), "error", "terminal type")
    c.eq(t.get("status"), expect["error_status"], "terminal status")
    body = t.get("error")
    c.ok(isinstance(body, dict) and set(body) == {"error"},
         f"OpenAI error body must be {{'error': {{...}}}}, got {body!r}")
    err = c.strict(OpenAIErrorObject, body["error"], "error.error")
    c.ok(bool(err.message), "error.message is empty")
    c.ok(bool(err.type), "error.type is empty")
    # The SDK's own exception mapping for this status and body.
    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    import httpx2
    resp = httpx2.Response(t["status"], json=body,
                           request=httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
    exc = client._make_status_error(err.message, body=body, response=resp)
    want_cls = OPENAI_EXC.get(t["status"], "InternalServerError" if t["status"] >= 500 else "APIStatusError")
    c.eq(type(exc).__name__, want_cls, "SDK exception class")
    c.eq(exc.type, err.type, "SDK exception .type")


# ---------------------------------------------------------------------------
# Responses caller

def status_for(expect: dict) -> str:
    return "completed"


def responses_output(c: Checker, resp: Any, expect: dict, where: str) -> None:
    """The output items carry exactly the expected text, reasoning and calls."""
    c.eq(resp.output_text, expect["text"], f"{where}.output_text")
    thinking = ""
    for item in resp.output:
        if item.type == "reasoning":
            parts = item.content or item.summary
            thinking += "".join(p.text for p in parts)
    c.eq(thinking, expect.get("thinking") or "", f"{where}: reasoning items")
    calls = [i for i in resp.output if i.type == "function_call"]
    c.eq([x.name for x in calls], [t["name"] for t in expect["tool_calls"]], f"{where}: function_call names")
    for x, want in zip(calls, expect["tool_calls"]):
        c.ok(bool(x.call_id), f"{where}: function_call {x.name} without call_id")
        args_equal(c, x.arguments, want["arguments"], f"{where}: function_call {x.name} arguments")
    c.ok(len({x.call_id for x in calls}) == len(calls), f"{where}: call ids are not unique")
    ids = [getattr(i, "id", None) for i in resp.output]
    c.ok(all(ids) and len(set(ids)) == len(ids), f"{where}: output item ids missing or not unique: {ids}")
    kinds = [i.type for i in resp.output]
    c.ok(all(k in ("message", "reasoning", "function_call") for k in kinds), f"{where}: unexpected items {kinds}")
    c.ok(resp.usage is not None, f"{where}.usage is missing")
    u = resp.usage
    c.eq(u.total_tokens, u.input_tokens + u.output_tokens, f"{where}.usage.total_tokens")
    c.ok(u.output_tokens > 0, f"{where}.usage.output_tokens is 0")


def check_responses_nonstream(c: Checker, case: dict) -> None:
    t, expect = case["terminal"], case["expect"]
    c.eq(case["chunks"], [], "chunks of a non-streaming request")
    raw = t.get("response")
    c.ok(isinstance(raw, dict), "done event has no `response` object")
    resp = c.strict(Response, raw, "response")
    dumped = resp.model_dump(mode="json", exclude_unset=True, by_alias=True)
    c.eq(dumped, raw, "response model_dump round trip")
    c.eq(resp.object, "response", "response.object")
    c.eq(resp.status, status_for(expect), "response.status")
    responses_output(c, resp, expect, "response")


STREAM_EVENT = TypeAdapter(ResponseStreamEvent)


def check_responses_stream(c: Checker, case: dict) -> None:
    t, expect, chunks = case["terminal"], case["expect"], case["chunks"]
    c.ok(len(chunks) > 0, "no events")
    c.ok(t.get("response") is None, "done event of a stream carries a response")
    tools = (case.get("request") or {}).get("tools") or []
    state = ResponseStreamState(input_tools=tools, text_format=openai.omit)
    high = []
    seqs = []
    for i, raw in enumerate(chunks):
        ev = c.strict(STREAM_EVENT, raw, f"events[{i}]")
        seqs.append(ev.sequence_number)
        high.extend(state.handle_event(ev))
    types = [e["type"] for e in chunks]
    c.eq(types[:2], ["response.created", "response.in_progress"], "first events")
    c.eq(types[-1], "response.completed", "last event")
    c.eq(types.count("response.completed"), 1, "response.completed events")
    c.eq(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "sequence_number grows by one")
    # Per item: added, then its deltas, then done; parts opened before deltas.
    added, done = set(), set()
    for i, e in enumerate(chunks):
        oi = e.get("output_index")
        if e["type"] == "response.output_item.added":
            c.ok(oi not in added, f"events[{i}]: item {oi} added twice")
            added.add(oi)
        elif e["type"] == "response.output_item.done":
            c.ok(oi in added and oi not in done, f"events[{i}]: item {oi} done without added")
            done.add(oi)
        elif oi is not None:
            c.ok(oi in added and oi not in done, f"events[{i}]: {e['type']} outside its item {oi}")
    c.eq(added, done, "every added item is done")
    final = state._completed_response
    c.ok(final is not None, "the accumulator saw no completed response")
    c.eq(final.status, status_for(expect), "final status")
    responses_output(c, final, expect, "final response")
    text = "".join(e.delta for e in high if e.type == "response.output_text.delta")
    c.eq(text, expect["text"], "output_text.delta events")
    args = [e.arguments for e in high if e.type == "response.function_call_arguments.done"]
    c.eq(len(args), len(expect["tool_calls"]), "function_call_arguments.done events")
    for a, want in zip(args, expect["tool_calls"]):
        args_equal(c, a, want["arguments"], "function_call_arguments.done")


# ---------------------------------------------------------------------------
# Anthropic caller

def anthropic_content(c: Checker, blocks: list, expect: dict, where: str) -> None:
    text = "".join(b.text for b in blocks if b.type == "text")
    c.eq(text, expect["text"], f"{where}: text blocks")
    thinking = "".join(b.thinking for b in blocks if b.type == "thinking")
    c.eq(thinking, expect.get("thinking") or "", f"{where}: thinking blocks")
    for i, b in enumerate(blocks):
        if b.type == "thinking":
            c.ok(bool(b.signature), f"{where}[{i}]: thinking block without signature")
    uses = [b for b in blocks if b.type == "tool_use"]
    c.eq([b.name for b in uses], [t["name"] for t in expect["tool_calls"]], f"{where}: tool_use names")
    for b, want in zip(uses, expect["tool_calls"]):
        c.ok(bool(b.id), f"{where}: tool_use {b.name} without id")
        c.eq(b.input, json.loads(want["arguments"]), f"{where}: tool_use {b.name} input")
    c.ok(len({b.id for b in uses}) == len(uses), f"{where}: tool_use ids are not unique")
    kinds = [b.type for b in blocks]
    c.ok(all(k in ("text", "thinking", "tool_use") for k in kinds), f"{where}: unexpected blocks {kinds}")


def stop_for(expect: dict) -> str:
    return "tool_use" if expect["tool_calls"] else "end_turn"


def check_anthropic_nonstream(c: Checker, case: dict) -> None:
    t, expect = case["terminal"], case["expect"]
    c.eq(case["chunks"], [], "chunks of a non-streaming request")
    raw = t.get("response")
    c.ok(isinstance(raw, dict), "done event has no `response` object")
    msg = c.strict(Message, raw, "response")
    dumped = msg.model_dump(mode="json", exclude_unset=True)
    c.eq(dumped, raw, "response model_dump round trip")
    c.eq(Message.model_validate(dumped), msg, "response re-validated from its dump")
    c.eq(msg.type, "message", "response.type")
    c.eq(msg.role, "assistant", "response.role")
    c.eq(msg.stop_reason, stop_for(expect), "response.stop_reason")
    anthropic_content(c, msg.content, expect, "response.content")


EVENT_ADAPTER: TypeAdapter = TypeAdapter(RawMessageStreamEvent)


def check_anthropic_stream(c: Checker, case: dict) -> None:
    t, expect, chunks = case["terminal"], case["expect"], case["chunks"]
    c.ok(len(chunks) > 0, "no events")
    c.ok(t.get("response") is None, "done event of a stream carries a response")
    snapshot = None
    bufs: dict = {}
    open_block = None  # index of the open content block
    next_index = 0
    phase = "start"  # start -> blocks -> delta -> stopped
    stop_events = []
    for i, raw in enumerate(chunks):
        where = f"events[{i}]"
        if raw.get("type") == "ping":
            # Part of the wire protocol but not of RawMessageStreamEvent: the
            # SDK's SSE decoder drops `ping` before parsing; so do we.
            c.eq(raw, {"type": "ping"}, f"{where}: ping event")
            c.ok(0 < i < len(chunks) - 1, f"{where}: ping before message_start or after message_stop")
            continue
        ev = c.strict(EVENT_ADAPTER, raw, where)
        ty = ev.type
        # The order the Anthropic streaming docs prescribe.
        if i == 0:
            c.eq(ty, "message_start", f"{where}: first event")
            c.eq(ev.message.content, [], f"{where}: message_start content")
            phase = "blocks"
        elif ty == "message_start":
            raise CaseFailure(f"{where}: a second message_start")
        elif ty == "content_block_start":
            c.eq(phase, "blocks", f"{where}: content_block_start after message_delta")
            c.ok(open_block is None, f"{where}: block {ev.index} opened while {open_block} is open")
            c.eq(ev.index, next_index, f"{where}: block index")
            open_block, next_index = ev.index, next_index + 1
        elif ty == "content_block_delta":
            c.eq(ev.index, open_block, f"{where}: delta for a block that is not open")
        elif ty == "content_block_stop":
            c.eq(ev.index, open_block, f"{where}: stop for a block that is not open")
            open_block = None
        elif ty == "message_delta":
            c.ok(open_block is None, f"{where}: message_delta while block {open_block} is open")
            c.eq(phase, "blocks", f"{where}: message_delta twice")
            stop_events.append(ev.delta.stop_reason)
            phase = "delta"
        elif ty == "message_stop":
            c.eq(phase, "delta", f"{where}: message_stop without message_delta before it")
            c.eq(i, len(chunks) - 1, f"{where}: message_stop is not the last event")
            phase = "stopped"
        # The SDK's own accumulator and event builder.
        snapshot = accumulate_event(event=ev, current_snapshot=snapshot, json_bufs=bufs)
        build_events(event=ev, message_snapshot=snapshot)
    c.eq(phase, "stopped", "stream ended without message_stop")
    c.eq(stop_events, [stop_for(expect)], "stop_reason from message_delta")
    c.required_present(snapshot, "final message")
    dumped = snapshot.model_dump(mode="json", exclude_unset=True)
    for b in dumped.get("content", []):
        b.pop("parsed_output", None)
    final = c.strict(Message, dumped, "final message", extras=False)
    c.eq(final.stop_reason, stop_for(expect), "final stop_reason")
    c.ok(final.usage.output_tokens > 0, "final usage.output_tokens is 0")
    anthropic_content(c, final.content, expect, "final message.content")


def check_anthropic_error(c: Checker, case: dict) -> None:
    t, expect = case["terminal"], case["expect"]
    c.eq(t.get("type"), "error", "terminal type")
    c.eq(t.get("status"), expect["error_status"], "terminal status")
    body = t.get("error")
    resp = c.strict(AnthropicErrorResponse, body, "error")
    c.ok(resp.error.type in get_args(AnthropicErrorType),
         f"error.error.type {resp.error.type!r} is not a documented Anthropic error type")
    want_type = ANTHROPIC_TYPE_FOR_STATUS.get(t["status"])
    if want_type:
        c.eq(resp.error.type, want_type, f"error type for HTTP {t['status']}")
    c.ok(bool(resp.error.message), "error.message is empty")
    import httpx2
    client = anthropic.Anthropic(api_key="sk-test", base_url="http://127.0.0.1:9")
    r = httpx2.Response(t["status"], json=body,
                        request=httpx2.Request("POST", "http://127.0.0.1:9/v1/messages"))
    exc = client._make_status_error(resp.error.message, body=body, response=r)
    want_cls = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
                404: "NotFoundError", 409: "ConflictError", 413: "RequestTooLargeError",
                422: "UnprocessableEntityError", 429: "RateLimitError",
                529: "OverloadedError"}.get(t["status"])
    if want_cls:
        c.eq(type(exc).__name__, want_cls, "SDK exception class")


# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Gemini caller (google-genai)

def gemini_content(c: Checker, resps: list, expect: dict, where: str) -> None:
    """The responses carry exactly the expected text, thoughts and calls."""
    text, thinking, calls = "", "", []
    for i, r in enumerate(resps):
        c.ok(r.candidates is not None and len(r.candidates) == 1,
             f"{where}[{i}]: want one candidate")
        content = r.candidates[0].content
        c.ok(content is not None, f"{where}[{i}]: candidate has no content")
        c.eq(content.role, "model", f"{where}[{i}].candidates[0].content.role")
        for p in content.parts or []:
            if p.text is not None and p.function_call is None:
                if p.thought:
                    thinking += p.text
                else:
                    text += p.text
        # The SDK's own accessor for the calls of a response.
        calls += [(f.name, f.args) for f in (r.function_calls or [])]
    c.eq(text, expect["text"], f"{where}: text")
    c.eq(thinking, expect["thinking"] or "", f"{where}: thought text")
    want = [(t["name"], json.loads(t["arguments"])) for t in expect["tool_calls"]]
    c.eq(calls, want, f"{where}: function calls")


def gemini_finish(c: Checker, r: Any, where: str) -> None:
    c.eq(r.candidates[0].finish_reason, genai_types.FinishReason.STOP, f"{where}: finishReason")
    u = r.usage_metadata
    c.ok(u is not None, f"{where}: usageMetadata is missing")
    c.eq(u.total_token_count, u.prompt_token_count + u.candidates_token_count,
         f"{where}: usageMetadata.totalTokenCount")


def check_gemini_nonstream(c: Checker, case: dict) -> None:
    c.eq(case["chunks"], [], "chunks of a non-streaming request")
    resp = c.strict(genai_types.GenerateContentResponse, case["terminal"].get("response"), "response")
    gemini_content(c, [resp], case["expect"], "response")
    gemini_finish(c, resp, "response")


def check_gemini_stream(c: Checker, case: dict) -> None:
    chunks = case["chunks"]
    c.ok(len(chunks) > 0, "no chunks")
    resps = [c.strict(genai_types.GenerateContentResponse, ch, f"chunks[{i}]")
             for i, ch in enumerate(chunks)]
    gemini_content(c, resps, case["expect"], "chunks")
    gemini_finish(c, resps[-1], "last chunk")
    for i, r in enumerate(resps[:-1]):
        c.ok(r.candidates[0].finish_reason is None, f"chunks[{i}]: finishReason before the end")


def check_gemini_error(c: Checker, case: dict) -> None:
    t, expect = case["terminal"], case["expect"]
    c.eq(t.get("status"), expect["error_status"], "terminal status")
    body = t.get("error")
    c.ok(isinstance(body, dict) and set(body) == {"error"},
         f"Google error body must be {{'error': {{...}}}}, got {body!r}")
    e = body["error"]
    c.eq(e.get("code"), t["status"], "error.code")
    c.ok(isinstance(e.get("message"), str) and e["message"], "error.message is empty")
    c.ok(isinstance(e.get("status"), str) and e["status"].isupper(), f"error.status {e.get('status')!r}")
    # The SDK's own exception for this status and body.
    try:
        genai_errors.APIError.raise_error(t["status"], body, None)
        c.ok(False, "the SDK raised nothing")
    except genai_errors.APIError as exc:
        want = genai_errors.ClientError if t["status"] < 500 else genai_errors.ServerError
        c.ok(isinstance(exc, want), f"SDK exception {type(exc).__name__}, want {want.__name__}")
        c.eq(exc.code, t["status"], "SDK exception .code")
        c.eq(exc.status, e["status"], "SDK exception .status")
        c.eq(exc.message, e["message"], "SDK exception .message")


def check_case(case: dict) -> Checker:
    c = Checker(case["case"])
    t = case["terminal"]
    c.ok(isinstance(t, dict) and t.get("type") in ("done", "error"), f"terminal {t!r}")
    if case["expect"].get("error_status") is not None:
        c.eq(case["chunks"], [], "chunks before a pre-stream error")
        {"anthropic": check_anthropic_error, "gemini": check_gemini_error}.get(
            case["caller"], check_openai_error)(c, case)
        return c
    c.eq(t["type"], "done", f"terminal type (error: {t.get('error')})")
    fn: Callable[[Checker, dict], None] = {
        ("openai", False): check_openai_nonstream,
        ("openai", True): check_openai_stream,
        ("anthropic", False): check_anthropic_nonstream,
        ("anthropic", True): check_anthropic_stream,
        ("responses", False): check_responses_nonstream,
        ("responses", True): check_responses_stream,
        ("gemini", False): check_gemini_nonstream,
        ("gemini", True): check_gemini_stream,
    }[(case["caller"], bool(case["stream"]))]
    fn(c, case)
    return c


# ---------------------------------------------------------------------------
# self-test: damaged payloads must be caught, so the checks above are not vacuous

def _first(cases: list, caller: str, stream: bool, pred: Callable[[dict], bool] = lambda c: True):
    for c in cases:
        if c["caller"] == caller and bool(c["stream"]) == stream and pred(c):
            return c
    raise SystemExit(f"self-test: no {caller} stream={stream} case to damage")


def _drop_where(lst: list, pred: Callable[[Any], bool]) -> None:
    for i, x in enumerate(lst):
        if pred(x):
            del lst[i]
            return
    raise SystemExit("self-test: nothing to drop")


def _mutations(cases: list):
    ok = lambda c: c["expect"]["error_status"] is None
    tools = lambda c: ok(c) and bool(c["expect"]["tool_calls"])
    err = lambda c: c["expect"]["error_status"] is not None

    def m(desc, caller, stream, pred, fn):
        return desc, _first(cases, caller, stream, pred), fn

    return [
        m("openai response without `created`", "openai", False, ok,
          lambda c: c["terminal"]["response"].pop("created")),
        m("openai response with an unknown field", "openai", False, ok,
          lambda c: c["terminal"]["response"]["choices"][0]["message"].__setitem__("bogus", 1)),
        m("openai response text altered", "openai", False, ok,
          lambda c: c["terminal"]["response"]["choices"][0]["message"].__setitem__("content", "x")),
        m("openai response tool arguments altered", "openai", False, tools,
          lambda c: c["terminal"]["response"]["choices"][0]["message"]["tool_calls"][1]["function"]
          .__setitem__("arguments", "{}")),
        m("openai chunk with a string `created`", "openai", True, ok,
          lambda c: c["chunks"][0].__setitem__("created", "now")),
        m("openai chunk without `id`", "openai", True, ok, lambda c: c["chunks"][1].pop("id")),
        m("openai stream without its finish chunk", "openai", True, ok,
          lambda c: _drop_where(c["chunks"], lambda ch: any(x.get("finish_reason") for x in ch["choices"]))),
        m("openai stream loses a text delta", "openai", True, ok,
          lambda c: _drop_where(c["chunks"], lambda ch: any(x["delta"].get("content") for x in ch["choices"]))),
        m("openai stream loses an argument fragment", "openai", True, tools,
          lambda c: _drop_where(c["chunks"], lambda ch: any(
              t.get("function", {}).get("arguments") for x in ch["choices"] for t in x["delta"].get("tool_calls") or []))),
        m("openai error with a numeric type", "openai", False, err,
          lambda c: c["terminal"]["error"]["error"].__setitem__("type", 5)),
        m("anthropic response without `usage`", "anthropic", False, ok,
          lambda c: c["terminal"]["response"].pop("usage")),
        m("anthropic response with a wrong stop_reason", "anthropic", False, ok,
          lambda c: c["terminal"]["response"].__setitem__("stop_reason", "max_tokens")),
        m("anthropic tool_use input altered", "anthropic", False, tools,
          lambda c: [b for b in c["terminal"]["response"]["content"] if b["type"] == "tool_use"][0]
          .__setitem__("input", {})),
        m("anthropic stream without message_start", "anthropic", True, ok,
          lambda c: _drop_where(c["chunks"], lambda e: e["type"] == "message_start")),
        m("anthropic stream without a content_block_stop", "anthropic", True, ok,
          lambda c: _drop_where(c["chunks"], lambda e: e["type"] == "content_block_stop")),
        m("anthropic stream without message_delta", "anthropic", True, ok,
          lambda c: _drop_where(c["chunks"], lambda e: e["type"] == "message_delta")),
        m("anthropic delta with an unknown field", "anthropic", True, ok,
          lambda c: [e for e in c["chunks"] if e["type"] == "content_block_delta"][0].__setitem__("x", 1)),
        m("anthropic stream loses an input_json_delta", "anthropic", True, tools,
          lambda c: _drop_where(c["chunks"], lambda e: e.get("delta", {}).get("type") == "input_json_delta")),
        m("anthropic text_delta without text", "anthropic", True, ok,
          lambda c: [e for e in c["chunks"] if e.get("delta", {}).get("type") == "text_delta"][0]["delta"].pop("text")),
        m("anthropic error with an undocumented type", "anthropic", False, err,
          lambda c: c["terminal"]["error"]["error"].__setitem__("type", "upstream_error")),
        m("anthropic error without the outer type", "anthropic", True, err,
          lambda c: c["terminal"]["error"].pop("type")),
        m("responses response without `created_at`", "responses", False, ok,
          lambda c: c["terminal"]["response"].pop("created_at")),
        m("responses usage without input_tokens_details", "responses", False, ok,
          lambda c: c["terminal"]["response"]["usage"].pop("input_tokens_details")),
        m("responses function_call arguments altered", "responses", False, tools,
          lambda c: [i for i in c["terminal"]["response"]["output"] if i["type"] == "function_call"][0]
          .__setitem__("arguments", "{}")),
        m("responses stream without response.created", "responses", True, ok,
          lambda c: _drop_where(c["chunks"], lambda e: e["type"] == "response.created")),
        m("responses stream without an output_item.added", "responses", True, ok,
          lambda c: _drop_where(c["chunks"], lambda e: e["type"] == "response.output_item.added")),
        m("responses stream loses a text delta", "responses", True, ok,
          lambda c: _drop_where(c["chunks"], lambda e: e["type"] == "response.output_text.delta")),
        m("responses stream with a sequence gap", "responses", True, ok,
          lambda c: c["chunks"][-1].__setitem__("sequence_number", 10**6)),
        m("responses stream without response.completed", "responses", True, ok,
          lambda c: _drop_where(c["chunks"], lambda e: e["type"] == "response.completed")),
        m("responses delta with an unknown field", "responses", True, ok,
          lambda c: [e for e in c["chunks"] if e["type"] == "response.output_text.delta"][0].__setitem__("x", 1)),
        m("gemini response with an unknown field", "gemini", False, ok,
          lambda c: c["terminal"]["response"].__setitem__("bogus", 1)),
        m("gemini response with a wrong finishReason", "gemini", False, ok,
          lambda c: c["terminal"]["response"]["candidates"][0].__setitem__("finishReason", "MAX_TOKENS")),
        m("gemini functionCall args altered", "gemini", False, tools,
          lambda c: [p for p in c["terminal"]["response"]["candidates"][0]["content"]["parts"] if "functionCall" in p][1]["functionCall"]
          .__setitem__("args", {})),
        m("gemini response text altered", "gemini", False, ok,
          lambda c: [p for p in c["terminal"]["response"]["candidates"][0]["content"]["parts"] if "text" in p][-1].__setitem__("text", "x")),
        m("gemini stream loses its finish chunk", "gemini", True, ok,
          lambda c: _drop_where(c["chunks"], lambda ch: ch["candidates"][0].get("finishReason"))),
        m("gemini stream loses a text chunk", "gemini", True, ok,
          lambda c: _drop_where(c["chunks"], lambda ch: any(p.get("text") for p in ch["candidates"][0]["content"]["parts"]))),
        m("gemini chunk with a string token count", "gemini", True, ok,
          lambda c: c["chunks"][-1]["usageMetadata"].__setitem__("promptTokenCount", "10")),
        m("gemini error with a string code", "gemini", False, err,
          lambda c: c["terminal"]["error"]["error"].__setitem__("code", "429")),
    ]


def self_test(cases: list) -> int:
    import copy
    caught, missed, skipped = 0, [], 0
    for desc, case, fn in _mutations(cases):
        try:
            check_case(copy.deepcopy(case))
        except Exception:
            skipped += 1  # the undamaged case fails already: proves nothing
            print(f"  skipped     {desc}: {case['case']} fails undamaged")
            continue
        bad = copy.deepcopy(case)
        fn(bad)
        try:
            check_case(bad)
            missed.append(f"{desc} ({case['case']})")
        except Exception:  # CaseFailure or an SDK accumulator error
            caught += 1
    for d in missed:
        print(f"  NOT CAUGHT  {d}")
    print(f"self-test: {caught} of {caught + len(missed)} damaged payloads caught"
          f" ({skipped} skipped)")
    return 1 if missed else 0


def main(argv: list[str]) -> int:
    args = argv[1:]
    selftest = "--self-test" in args
    args = [a for a in args if a != "--self-test"]
    if len(args) != 1:
        print(f"usage: {argv[0]} [--self-test] PAYLOADS.jsonl", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()]
    if selftest:
        return self_test(cases)
    print(f"validate_sdk: openai {openai.__version__}, anthropic {anthropic.__version__}, "
          f"google-genai {google.genai.__version__}, "
          f"pydantic {pydantic.VERSION}; {len(cases)} cases")
    passed, failed, checks = 0, [], 0
    for case in cases:
        c = Checker(case.get("case", "?"))
        try:
            c = check_case(case)
            passed += 1
            checks += c.checks
            print(f"  ok    {case['case']} ({c.checks} checks)")
        except CaseFailure as e:
            failed.append((case.get("case"), str(e)))
            print(f"  FAIL  {case.get('case')}: {e}")
        except Exception:  # an SDK accumulator raising is a failure too
            msg = traceback.format_exc(limit=4)
            failed.append((case.get("case"), msg))
            print(f"  FAIL  {case.get('case')}: exception\n{msg}")
    if not cases:
        failed.append(("(file)", "no cases"))
    print(f"validate_sdk: {checks} checks in passing cases")
    if failed:
        print("failures:")
        for name, msg in failed:
            print(f"  {name}: {msg.splitlines()[0] if msg else ''}")
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
