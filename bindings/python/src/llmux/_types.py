"""Response objects: attribute access over the JSON llmux returns.

The objects wrap the decoded JSON as is (no validation, no copying): nested
dicts become objects, lists are wrapped lazily. A missing key reads as
``None`` (as optional fields do in the openai SDK, e.g.
``chunk.choices[0].delta.content`` on the final chunk); item access
(``obj["key"]``) raises ``KeyError`` instead. ``to_dict()`` returns the
underlying JSON.

Static types: each class declares the fields of its JSON shape with the
openai (and anthropic) SDK's class and field names, so editors and
``mypy --strict`` follow ``resp.choices[0].message.content`` down to
``Optional[str]``. A nested object is wrapped in the class its field
declares; fields not declared still read through attribute access, typed
``Any``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type, TypeVar, Union

from ._json import loads

_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls: type) -> Dict[str, Any]:
    """The declared field types of a response class (resolved once)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _object_class(hint: Any) -> Optional[Type["LLMuxObject"]]:
    """The LLMuxObject subclass in ``X`` or ``Optional[X]``, if any."""
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and issubclass(t, LLMuxObject):
            return t
    return None


def _item_hint(hint: Any) -> Any:
    """``X`` from ``List[X]`` or ``Optional[List[X]]``."""
    for t in (hint, *typing.get_args(hint)):
        if typing.get_origin(t) is list:
            return typing.get_args(t)[0]
    return None


#: How a field's value is wrapped: (a constructor of the class a dict value
#: becomes, the type of a list value's items).
Spec = Tuple[Callable[[Dict[str, Any]], "LLMuxObject"], Any]

#: Per field type (as declared: a class or a typing alias).
_SPECS: Dict[Any, Spec] = {}


def _make_spec(hint: Any) -> Spec:
    cls = _object_class(hint) or LLMuxObject
    if cls.__init__ is not LLMuxObject.__init__:
        return cls, _item_hint(hint)

    def make(data: Dict[str, Any]) -> LLMuxObject:
        # What cls(data) does, without a Python __init__ call.
        obj = _new(cls)
        _set_data(obj, data)
        return obj

    return make, _item_hint(hint)


def _spec(hint: Any) -> Spec:
    try:
        return _SPECS[hint]
    except KeyError:
        spec = _SPECS[hint] = _make_spec(hint)
        return spec
    except TypeError:  # an unhashable hint
        return _make_spec(hint)


def _wrap(value: Any, hint: Any = None) -> Any:
    if isinstance(value, dict):
        return _spec(hint)[0](value)
    if isinstance(value, list):
        return _wrap_list(value, _spec(hint)[1])
    return value


def _wrap_list(values: List[Any], item_hint: Any) -> List[Any]:
    """A list value, its items wrapped as ``item_hint`` says."""
    make, inner = _spec(item_hint)
    return [make(v) if isinstance(v, dict) else _wrap_list(v, inner) if isinstance(v, list) else v for v in values]


def _field_property(owner: type, name: str) -> property:
    """The property for field ``name`` declared by class ``owner``: the JSON
    value, a dict wrapped in the declared class, a list's items likewise."""
    spec: Optional[Spec] = None  # resolved on first use: hints may name later classes

    def get(self: LLMuxObject) -> Any:
        nonlocal spec
        data = self._data
        if data is None:
            data = _decode(self)
        value = data.get(name)
        if not isinstance(value, (dict, list)):
            return value
        s = spec
        if s is None:
            s = spec = _spec(_hints(owner).get(name))  # one assignment: threads see all or nothing
        if isinstance(value, dict):
            return s[0](value)
        return _wrap_list(value, s[1])

    return property(get, doc=f"The ``{name}`` field (None when absent).")


O = TypeVar("O", bound="LLMuxObject")


class LLMuxObject:
    """A JSON object with attribute access."""

    __slots__ = ("_data", "_raw")
    # The JSON object; None in an object made by _from_json() until its
    # JSON text (in _raw) is decoded.
    _data: Optional[Dict[str, Any]]
    _raw: Optional[bytes]

    def __init__(self, data: Dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each declared field becomes a property: reading it costs a call,
        # where a name found nowhere costs a failed lookup (an AttributeError
        # made and dropped) before __getattr__.
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("__annotations__", {}):
            if not name.startswith("_") and name not in cls.__dict__:
                setattr(cls, name, _field_property(cls, name))

    @classmethod
    def _from_json(cls: Type[O], raw: bytes) -> O:
        """An object over the JSON text ``raw``, decoded on first use (any
        field, item, ``to_dict()``, ``==``, ``repr``)."""
        obj = _new(cls)
        _set_data(obj, None)
        _set_raw(obj, raw)
        return obj

    def _json(self) -> Dict[str, Any]:
        data = self._data
        return data if data is not None else _decode(self)

    def __getattr__(self, name: str) -> Any:
        # Only called for what normal lookup does not find: undeclared JSON
        # fields (declared ones are properties).
        if name.startswith("__") and name.endswith("__") or name in ("_data", "_raw"):
            raise AttributeError(name)
        return _wrap(self._json().get(name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __getitem__(self, key: str) -> Any:
        value = self._json()[key]
        if isinstance(value, (dict, list)):
            return _wrap(value, _hints(type(self)).get(key))
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._json()

    def __iter__(self) -> Iterator[str]:
        return iter(self._json())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LLMuxObject):
            return bool(self._json() == other._json())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | {k for k in self._json() if k.isidentifier()})

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``dict.get``, wrapped."""
        return _wrap(self._json().get(key, default), _hints(type(self)).get(key))

    def keys(self) -> List[str]:
        return list(self._json())

    def to_dict(self) -> Dict[str, Any]:
        """The underlying JSON object (not a copy)."""
        return self._json()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._json()!r})"


_new = object.__new__
# The slots' own accessors (C calls, past __setattr__).
_get_raw: Callable[[LLMuxObject], Optional[bytes]] = LLMuxObject.__dict__["_raw"].__get__
_set_raw: Callable[[LLMuxObject, Optional[bytes]], None] = LLMuxObject.__dict__["_raw"].__set__
_get_data: Callable[[LLMuxObject], Optional[Dict[str, Any]]] = LLMuxObject.__dict__["_data"].__get__
_set_data: Callable[[LLMuxObject, Optional[Dict[str, Any]]], None] = LLMuxObject.__dict__["_data"].__set__


def _decode(obj: LLMuxObject) -> Dict[str, Any]:
    """Decodes the JSON text of an object made by ``_from_json`` (once; two
    threads racing both decode it, harmlessly)."""
    raw = _get_raw(obj)
    if raw is None:  # decoded meanwhile by another thread (it set _data first)
        data = _get_data(obj)
        assert data is not None
        return data
    decoded: Dict[str, Any] = loads(raw)
    _set_data(obj, decoded)
    _set_raw(obj, None)
    return decoded


@dataclass(frozen=True)
class Attempt:
    """One try at one endpoint."""

    endpoint: str
    provider: str
    outcome: str
    status: Optional[int]
    elapsed_ms: Optional[float]
    error: Optional[str]

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Attempt":
        return cls(
            endpoint=d.get("endpoint", ""),
            provider=d.get("provider", ""),
            outcome=d.get("outcome", ""),
            status=d.get("status"),
            elapsed_ms=d.get("elapsed_ms"),
            error=d.get("error"),
        )


@dataclass(frozen=True)
class Usage:
    """Token usage, normalised (OpenAI's convention: ``prompt_tokens``
    includes ``cached_tokens``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Usage":
        return cls(
            prompt_tokens=int(d.get("prompt_tokens") or 0),
            completion_tokens=int(d.get("completion_tokens") or 0),
            total_tokens=int(d.get("total_tokens") or 0),
            cached_tokens=int(d.get("cached_tokens") or 0),
        )


@dataclass(frozen=True)
class Routing:
    """The routing record of a finished request: which endpoint served it,
    every attempt, first-token latency, usage and cost. On failed requests
    ``endpoint``/``provider``/``usage``/``cost_usd`` are ``None``."""

    model: Optional[str]
    endpoint: Optional[str]
    provider: Optional[str]
    upstream_model: Optional[str]
    attempts: List[Attempt]
    first_token_ms: Optional[float]
    latency_ms: Optional[float]
    usage: Optional[Usage]
    cost_usd: Optional[float]
    raw: Dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Routing":
        usage = d.get("usage")
        return cls(
            model=d.get("model"),
            endpoint=d.get("endpoint"),
            provider=d.get("provider"),
            upstream_model=d.get("upstream_model"),
            attempts=[Attempt.from_dict(a) for a in d.get("attempts") or [] if isinstance(a, dict)],
            first_token_ms=d.get("first_token_ms"),
            latency_ms=d.get("latency_ms"),
            usage=Usage.from_dict(usage) if isinstance(usage, dict) else None,
            cost_usd=d.get("cost_usd"),
            raw=d,
        )

    def to_dict(self) -> Dict[str, Any]:
        """The routing record as llmux sent it."""
        return self.raw


class _Routed(LLMuxObject):
    """A complete response plus the routing record that produced it."""

    __slots__ = ("_routing",)
    _routing: Union[Routing, Dict[str, Any], bytes]

    def __init__(
        self, data: Dict[str, Any], routing: Union[Routing, Dict[str, Any], bytes, None] = None
    ) -> None:
        _set_data(self, data)
        # A raw routing dict, or the JSON of the terminal event that carries
        # it, is turned into a Routing on first access.
        object.__setattr__(self, "_routing", routing if routing is not None else {})

    @property
    def routing(self) -> Routing:
        """How llmux routed this request."""
        r = self._routing
        if isinstance(r, Routing):
            return r
        if isinstance(r, bytes):
            raw = loads(r).get("routing")
            r = raw if isinstance(raw, dict) else {}
        routing = Routing.from_dict(r)
        object.__setattr__(self, "_routing", routing)
        return routing


# OpenAI Chat Completions (names as in openai.types.chat).


class Function(LLMuxObject):
    """The function a tool call invokes; ``arguments`` is JSON text."""

    __slots__ = ()
    name: str
    arguments: str


class ChatCompletionMessageToolCall(LLMuxObject):
    __slots__ = ()
    id: str
    type: str
    function: Function


class ChatCompletionMessage(LLMuxObject):
    """``choices[i].message``; ``reasoning_content`` is llmux's (and
    DeepSeek's) name for the reasoning text."""

    __slots__ = ()
    role: str
    content: Optional[str]
    refusal: Optional[str]
    tool_calls: Optional[List[ChatCompletionMessageToolCall]]
    reasoning_content: Optional[str]


class Choice(LLMuxObject):
    __slots__ = ()
    index: int
    message: ChatCompletionMessage
    finish_reason: Optional[str]
    logprobs: Optional[Any]


class PromptTokensDetails(LLMuxObject):
    __slots__ = ()
    cached_tokens: Optional[int]


class CompletionTokensDetails(LLMuxObject):
    __slots__ = ()
    reasoning_tokens: Optional[int]


class CompletionUsage(LLMuxObject):
    """``usage`` of a chat completion or of a stream's last chunk."""

    __slots__ = ()
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: Optional[PromptTokensDetails]
    completion_tokens_details: Optional[CompletionTokensDetails]


class ChatCompletion(_Routed):
    """An OpenAI ``chat.completion`` response (``resp.choices[0].message.content``)."""

    __slots__ = ()
    id: str
    object: str
    created: int
    model: str
    choices: List[Choice]
    usage: Optional[CompletionUsage]
    system_fingerprint: Optional[str]
    service_tier: Optional[str]


class ChoiceDeltaToolCallFunction(LLMuxObject):
    __slots__ = ()
    name: Optional[str]
    arguments: Optional[str]


class ChoiceDeltaToolCall(LLMuxObject):
    __slots__ = ()
    index: int
    id: Optional[str]
    type: Optional[str]
    function: Optional[ChoiceDeltaToolCallFunction]


class ChoiceDelta(LLMuxObject):
    __slots__ = ()
    role: Optional[str]
    content: Optional[str]
    refusal: Optional[str]
    tool_calls: Optional[List[ChoiceDeltaToolCall]]
    reasoning_content: Optional[str]


class ChunkChoice(LLMuxObject):
    """``choices[i]`` of a chunk (``openai.types.chat.chat_completion_chunk.Choice``)."""

    __slots__ = ()
    index: int
    delta: ChoiceDelta
    finish_reason: Optional[str]
    logprobs: Optional[Any]


class ChatCompletionChunk(LLMuxObject):
    """An OpenAI ``chat.completion.chunk``, byte for byte as the upstream sent it."""

    __slots__ = ()
    id: str
    object: str
    created: int
    model: str
    choices: List[ChunkChoice]
    usage: Optional[CompletionUsage]
    system_fingerprint: Optional[str]
    service_tier: Optional[str]


# Anthropic Messages (names as in anthropic.types).


class ContentBlock(LLMuxObject):
    """One block of ``content``: ``type`` is ``text`` (``text``),
    ``tool_use`` (``id``, ``name``, ``input``) or ``thinking``
    (``thinking``, ``signature``); the other fields are ``None``."""

    __slots__ = ()
    type: str
    text: Optional[str]
    id: Optional[str]
    name: Optional[str]
    input: Optional[Dict[str, Any]]
    thinking: Optional[str]
    signature: Optional[str]


class MessageUsage(LLMuxObject):
    """``usage`` of an Anthropic message (``anthropic.types.Usage``)."""

    __slots__ = ()
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: Optional[int]
    cache_read_input_tokens: Optional[int]


class Message(_Routed):
    """An Anthropic Messages response (``resp.content[0].text``)."""

    __slots__ = ()
    id: str
    type: str
    role: str
    model: str
    content: List[ContentBlock]
    stop_reason: Optional[str]
    stop_sequence: Optional[str]
    usage: MessageUsage


class MessageStreamDelta(LLMuxObject):
    """``delta`` of ``content_block_delta`` (``text``, ``partial_json``,
    ``thinking``, ``signature``) or of ``message_delta`` (``stop_reason``,
    ``stop_sequence``)."""

    __slots__ = ()
    type: Optional[str]
    text: Optional[str]
    partial_json: Optional[str]
    thinking: Optional[str]
    signature: Optional[str]
    stop_reason: Optional[str]
    stop_sequence: Optional[str]


class Response(_Routed):
    """An OpenAI Responses response (``resp.output``, ``resp.output_text``)."""

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part, joined (as the openai SDK's)."""
        out = []
        for item in self._json().get("output") or []:
            if item.get("type") == "message":
                for part in item.get("content") or []:
                    if part.get("type") == "output_text":
                        out.append(part.get("text") or "")
        return "".join(out)


class ResponseStreamEvent(LLMuxObject):
    """A Responses stream event; ``.type`` names it (``response.created``,
    ``response.output_text.delta``, ..., ``response.completed``) and
    ``.sequence_number`` orders it."""


class MessageStreamEvent(LLMuxObject):
    """An Anthropic stream event; ``.type`` names it (``message_start``,
    ``content_block_delta``, ...) and says which fields are set."""

    __slots__ = ()
    type: str
    message: Optional[Message]
    index: Optional[int]
    content_block: Optional[ContentBlock]
    delta: Optional[MessageStreamDelta]
    usage: Optional[MessageUsage]
