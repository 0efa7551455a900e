"""llmux: Python binding of the llmux embeddable LLM router.

Quickstart::

    import llmux

    with llmux.Router({"providers": [...], "models": [...]}) as router:
        resp = router.chat.completions.create(
            model="meta/llama-3.1-70b",
            messages=[{"role": "user", "content": "hi"}],
        )
        print(resp.choices[0].message.content, resp.routing.endpoint)

See the package README for the library search order and the asyncio API.
"""

from ._async import AsyncRouter, AsyncStream
from ._errors import (
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InternalError,
    InvalidRequestError,
    LLMuxError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestCancelled,
    RequestTooLargeError,
    RouterClosedError,
    UnknownEndpointError,
    UnknownModelError,
    UnknownProviderError,
    UpstreamError,
)
from ._ffi import LibraryNotFoundError, LibraryVersionError, Result
from ._ffi import version as library_version
from ._router import Router, Stream
from ._types import (
    Attempt,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    CompletionTokensDetails,
    CompletionUsage,
    ContentBlock,
    Function,
    LLMuxObject,
    Message,
    MessageStreamDelta,
    MessageStreamEvent,
    MessageUsage,
    PromptTokensDetails,
    Response,
    ResponseStreamEvent,
    Routing,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "APITimeoutError",
    "AsyncRouter",
    "AsyncStream",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChunkChoice",
    "CompletionTokensDetails",
    "CompletionUsage",
    "ConfigError",
    "ContentBlock",
    "Function",
    "InternalError",
    "InvalidRequestError",
    "LLMuxError",
    "LLMuxObject",
    "LibraryNotFoundError",
    "LibraryVersionError",
    "Message",
    "MessageStreamDelta",
    "MessageStreamEvent",
    "MessageUsage",
    "NotFoundError",
    "PermissionDeniedError",
    "PromptTokensDetails",
    "RateLimitError",
    "RequestCancelled",
    "RequestTooLargeError",
    "Response",
    "ResponseStreamEvent",
    "Result",
    "Router",
    "RouterClosedError",
    "Routing",
    "Stream",
    "UnknownEndpointError",
    "UnknownModelError",
    "UnknownProviderError",
    "UpstreamError",
    "Usage",
    "library_version",
]
