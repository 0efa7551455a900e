"""Response objects: attribute access over the JSON llmux returns.

The objects wrap the decoded JSON as is (no schema, no copying): nested
dicts become objects, lists are wrapped lazily. A missing key reads as
``None`` (as optional fields do in the openai SDK, e.g.
``chunk.choices[0].delta.content`` on the final chunk); item access
(``obj["key"]``) raises ``KeyError`` instead. ``to_dict()`` returns the
underlying JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Union


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return LLMuxObject(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class LLMuxObject:
    """A JSON object with attribute access."""

    __slots__ = ("_data",)
    _data: Dict[str, Any]

    def __init__(self, data: Dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _wrap(self._data.get(name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LLMuxObject):
            return bool(self._data == other._data)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | {k for k in self._data if k.isidentifier()})

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``dict.get``, wrapped."""
        return _wrap(self._data.get(key, default))

    def keys(self) -> List[str]:
        return list(self._data)

    def to_dict(self) -> Dict[str, Any]:
        """The underlying JSON object (not a copy)."""
        return self._data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


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
    _routing: Optional[Routing]

    def __init__(self, data: Dict[str, Any], routing: Union[Routing, Dict[str, Any], None]) -> None:
        super().__init__(data)
        # A raw routing dict is turned into a Routing on first access.
        object.__setattr__(self, "_routing", routing)

    @property
    def routing(self) -> Optional[Routing]:
        """How llmux routed this request."""
        r = self._routing
        if isinstance(r, dict):
            r = Routing.from_dict(r)
            object.__setattr__(self, "_routing", r)
        return r


class ChatCompletion(_Routed):
    """An OpenAI ``chat.completion`` response (``resp.choices[0].message.content``)."""


class ChatCompletionChunk(LLMuxObject):
    """An OpenAI ``chat.completion.chunk``, byte for byte as the upstream sent it."""


class Message(_Routed):
    """An Anthropic Messages response (``resp.content[0].text``)."""


class Response(_Routed):
    """An OpenAI Responses response (``resp.output``, ``resp.output_text``)."""

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part, joined (as the openai SDK's)."""
        out = []
        for item in self._data.get("output") or []:
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
    ``content_block_delta``, ...)."""
