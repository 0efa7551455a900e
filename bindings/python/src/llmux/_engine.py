"""``_Engine``: owns one ``llmux_engine *`` and wraps each C call.

Calls other than ``llmux_engine_free`` may run from any thread at once; the
engine is freed only after every such call has returned (a small in-use
counter) and after the owner joined its pollers. ``free()`` is idempotent.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from ctypes import byref, c_int, c_size_t, c_uint64, c_void_p, string_at
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _ffi
from ._errors import ConfigError, InvalidRequestError, LLMuxError, RouterClosedError, error_from_code
from ._ffi import Result

#: A config: a dict (serialised to JSON), JSON text (str or bytes), or a path.
Config = Union[Dict[str, Any], str, bytes, "os.PathLike[str]"]

#: One polled event: (request id, kind, JSON bytes).
RawEvent = Tuple[int, int, bytes]


def _config_is_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


class _Engine:
    """The native engine handle plus a guard against freeing it while a call
    is running."""

    def __init__(self, config: Config) -> None:
        self._lib = _ffi.lib()
        # A plain lock for the in-use counter (entered on every call, so its
        # C context manager, not the Condition's Python one); the Condition
        # over it only for free() to wait on.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._users = 0
        self._closed = False
        ptr = c_void_p()
        err = c_void_p()
        if isinstance(config, dict):
            data = json.dumps(config).encode("utf-8")
            rc = self._lib.llmux_engine_new(data, len(data), byref(ptr), byref(err))
        elif isinstance(config, bytes) or (isinstance(config, str) and _config_is_json(config)):
            data = config if isinstance(config, bytes) else config.encode("utf-8")
            rc = self._lib.llmux_engine_new(data, len(data), byref(ptr), byref(err))
        elif isinstance(config, (str, os.PathLike)):
            path = os.fsencode(config)
            rc = self._lib.llmux_engine_new_from_file(path, byref(ptr), byref(err))
        else:
            raise TypeError(f"config must be a dict, JSON text or a path, not {type(config).__name__}")
        message = _ffi.take_string(err)
        if rc != Result.OK or not ptr.value:
            if rc in (Result.ERR_RUNTIME, Result.ERR_PANIC):
                raise error_from_code(rc, message)
            raise ConfigError(message or _ffi.result_text(rc), code=rc)
        self._ptr: int = ptr.value
        self._fd: int = -1

    # -- in-use guard ------------------------------------------------------

    def _enter(self) -> int:
        with self._lock:
            if self._closed:
                raise RouterClosedError("the router is closed")
            self._users += 1
            return self._ptr

    def _exit(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._closed:  # free() waits for this
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def address(self) -> int:
        """The raw pointer (for a poller that guards its calls itself)."""
        return self._ptr

    # -- calls -------------------------------------------------------------

    def submit(self, protocol: int, body: bytes, traceparent: Optional[str] = None) -> int:
        """Submits a request; with ``traceparent`` (a W3C ``traceparent``
        value) through ``llmux_submit_traced``, so its span is a child of
        the caller's."""
        tp = _traceparent_arg(self._lib, traceparent)
        ptr = self._enter()
        try:
            rid = c_uint64()
            err = c_void_p()
            if tp is None:
                rc = self._lib.llmux_submit(ptr, protocol, body, len(body), byref(rid), byref(err))
            else:
                rc = self._lib.llmux_submit_traced(ptr, protocol, body, len(body), tp, byref(rid), byref(err))
            message = _ffi.take_string(err) if err.value else None
        finally:
            self._exit()
        if rc == Result.ERR_INVALID_ARGUMENT and tp is not None:
            raise InvalidRequestError(message or "invalid traceparent", code=rc)  # a malformed traceparent
        if rc != Result.OK:
            raise error_from_code(rc, message)
        return int(rid.value)

    def cancel(self, request_id: int) -> bool:
        """True when the request was in flight (it will end with a
        ``cancelled`` error event), False when unknown or already ended."""
        ptr = self._enter()
        try:
            rc = self._lib.llmux_cancel(ptr, request_id)
        finally:
            self._exit()
        if rc == Result.OK:
            return True
        if rc in (Result.ERR_UNKNOWN_REQUEST, Result.ERR_SHUTTING_DOWN):
            return False
        raise error_from_code(rc, None)

    def wakeup(self) -> None:
        ptr = self._enter()
        try:
            self._lib.llmux_wakeup(ptr)
        finally:
            self._exit()

    def fd(self) -> int:
        if self._fd < 0:
            ptr = self._enter()
            try:
                out = c_int(-1)
                rc = self._lib.llmux_engine_fd(ptr, byref(out))
            finally:
                self._exit()
            if rc != Result.OK:
                raise error_from_code(rc, None)
            self._fd = out.value
        return self._fd

    def _json_out(self, name: str) -> Dict[str, Any]:
        """Calls a `llmux_*(engine, char **json_out)` function and decodes it."""
        ptr = self._enter()
        try:
            out = c_void_p()
            rc = getattr(self._lib, name)(ptr, byref(out))
            text = _ffi.take_string(out)
        finally:
            self._exit()
        if rc != Result.OK or text is None:
            raise error_from_code(rc, None)
        result: Dict[str, Any] = json.loads(text)
        return result

    def stats(self) -> Dict[str, Any]:
        return self._json_out("llmux_stats")

    def health_export(self) -> Dict[str, Any]:
        if not _ffi.has(self._lib, "llmux_health_export"):
            raise LLMuxError("this libllmux has no llmux_health_export")
        return self._json_out("llmux_health_export")

    def health_import(self, data: bytes) -> int:
        if not _ffi.has(self._lib, "llmux_health_import"):
            raise LLMuxError("this libllmux has no llmux_health_import")
        ptr = self._enter()
        try:
            restored = c_size_t(0)
            err = c_void_p()
            rc = self._lib.llmux_health_import(ptr, data, len(data), byref(restored), byref(err))
            message = _ffi.take_string(err)
        finally:
            self._exit()
        if rc != Result.OK:
            raise error_from_code(rc, message)
        return int(restored.value)

    def reload(self, config: Config) -> Dict[str, Any]:
        """``llmux_engine_reload``: the report as a dict; an invalid config
        raises :class:`ConfigError` (every problem named) and changes
        nothing."""
        if not _ffi.has(self._lib, "llmux_engine_reload"):
            raise LLMuxError("this libllmux has no llmux_engine_reload")
        if isinstance(config, dict):
            data = json.dumps(config).encode("utf-8")
        elif isinstance(config, bytes):
            data = config
        elif isinstance(config, str) and _config_is_json(config):
            data = config.encode("utf-8")
        elif isinstance(config, (str, os.PathLike)):
            with open(config, "rb") as f:
                data = f.read()
        else:
            raise TypeError(f"config must be a dict, JSON text or a path, not {type(config).__name__}")
        ptr = self._enter()
        try:
            report = c_void_p()
            err = c_void_p()
            rc = self._lib.llmux_engine_reload(ptr, data, len(data), byref(report), byref(err))
            text = _ffi.take_string(report)
            message = _ffi.take_string(err)
        finally:
            self._exit()
        if rc == Result.ERR_INVALID_CONFIG:
            raise ConfigError(message or _ffi.result_text(rc), code=rc)
        if rc != Result.OK or text is None:
            raise error_from_code(rc, message)
        result: Dict[str, Any] = json.loads(text)
        return result

    def poll_nowait(self, events: "ctypes.Array[_ffi.llmux_event]") -> List[RawEvent]:
        """``llmux_poll`` with timeout 0 (guarded)."""
        ptr = self._enter()
        try:
            return poll(self._lib, ptr, events, 0)
        finally:
            self._exit()

    def free(self) -> None:
        """Waits for running calls to return, then frees the engine. The
        caller must have stopped its pollers first. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.wait_for(lambda: self._users == 0, timeout=10.0)
            ptr, self._ptr = self._ptr, 0
        if ptr:
            self._lib.llmux_engine_free(ptr)

    def mark_closed(self) -> None:
        """Rejects new calls without freeing (used when the engine must be
        leaked because a poller could not be joined)."""
        with self._cond:
            self._closed = True


def poll(lib: ctypes.CDLL, ptr: int, events: "ctypes.Array[_ffi.llmux_event]", timeout_ms: int) -> List[RawEvent]:
    """One ``llmux_poll`` call: copies the events out and frees them."""
    count = c_size_t(0)
    rc = lib.llmux_poll(ptr, events, len(events), timeout_ms, byref(count))
    if rc != Result.OK:
        raise error_from_code(rc, None, default=LLMuxError)
    n = count.value
    if n == 0:
        return []
    try:
        return copy_events(events, n)
    finally:
        lib.llmux_events_free(events, n)


def copy_events(events: "ctypes.Array[_ffi.llmux_event]", n: int) -> List[RawEvent]:
    """The first ``n`` events as (request id, kind, JSON bytes). Reads them
    through ``llmux_event_text``, whose ``data`` ctypes copies up to the NUL
    the C ABI puts after the JSON (no Python call per event); if that is
    shorter than ``data_len`` (a NUL inside), copies ``data_len`` bytes."""
    out: List[RawEvent] = []
    for i, ev in enumerate((_ffi.llmux_event_text * n).from_buffer(events)):
        data = ev.data
        if data is None:
            data = b""
        elif len(data) != ev.data_len:
            data = string_at(events[i].data, ev.data_len)
        out.append((ev.request_id, ev.kind, data))
    return out


def _traceparent_arg(lib: Any, traceparent: Optional[str]) -> Optional[bytes]:
    """The ``traceparent`` for ``llmux_submit_traced`` (None: plain submit).
    Refused here: a value that is not a str or holds a NUL character (C
    would cut it short); the library checks the rest."""
    if traceparent is None:
        return None
    if not isinstance(traceparent, str):
        raise TypeError(f"traceparent must be a str, not {type(traceparent).__name__}")
    if "\0" in traceparent:
        raise InvalidRequestError("traceparent holds a NUL character", code=Result.ERR_INVALID_ARGUMENT)
    if not _ffi.has(lib, "llmux_submit_traced"):
        raise LLMuxError("this libllmux has no llmux_submit_traced (it is older than the binding)")
    return traceparent.encode("utf-8", "surrogateescape")
