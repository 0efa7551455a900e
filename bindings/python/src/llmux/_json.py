"""JSON in and out of the C ABI, without the per-call wrappers of
``json.loads`` and ``json.dumps``.

``json.loads(bytes)`` spends about half its time on a short chunk in its
Python wrapper (encoding detection, a decoder method call, two whitespace
regex matches). :func:`loads` calls the C scanner of the standard ``json``
module directly and falls back to ``json.loads`` for anything the scanner
does not take whole (surrounding whitespace, invalid JSON, invalid UTF-8),
so results and errors are exactly ``json.loads``'s.

``json.dumps(obj)`` builds a new C encoder (and its circular-reference
table) on every call; :func:`dumps` reuses one, made with ``json.dumps``'
defaults, and falls back to ``json.dumps`` when the C encoder is missing or
differs, or when a structure nests too deep (a cycle then raises
``json.dumps``' ``ValueError``).
"""

from __future__ import annotations

import json
import json.encoder
from typing import Any, Callable, Dict, Optional, Tuple

# The scanner of a default JSONDecoder (the C one when available), as
# json.loads uses it. It holds the GIL for a whole call, so threads may share it.
_scan: Callable[[str, int], Tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")

#: How every ``done`` terminal event with a response begins (the field order
#: of the library's terminal event).
_DONE_RESPONSE = '{"type":"done","response":'


def loads(data: bytes) -> Any:
    """``json.loads(data)``, faster for compact JSON without surrounding
    whitespace."""
    try:
        text = data.decode("utf-8")
        value, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError):
        return json.loads(data)
    if end != len(text):
        return json.loads(data)
    return value


def done_response(data: bytes) -> Optional[Dict[str, Any]]:
    """The ``response`` object of a ``done`` terminal event, decoding only
    that object (the routing record after it is left for later); None when
    ``data`` does not begin the way the library writes it (then decode it
    whole)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.startswith(_DONE_RESPONSE):
        return None
    try:
        value, end = _scan(text, len(_DONE_RESPONSE))
    except (StopIteration, ValueError):
        return None
    # Another member must follow: the object did not end after `response`.
    if not isinstance(value, dict) or text[end : end + 1] != ",":
        return None
    return value


def _shared_encoder() -> Optional[Callable[[Any, int], Any]]:
    """The C encoder ``json.dumps`` makes per call, made once: defaults of
    ``json.dumps`` but no circular-reference table (a cycle recurses until
    RecursionError; :func:`dumps` then asks ``json.dumps``). None when the C
    encoder is unavailable or its output differs from ``json.dumps``'."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        enc: Callable[[Any, int], Any] = make(
            None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
        )
        sample = {"a": [1, 2.5, float("inf"), None, True, "\u00e9\n"], "b": {"c": (1,)}, 3: -0.0}
        if "".join(enc(sample, 0)) != json.dumps(sample):
            return None
    except Exception:  # noqa: BLE001 - another Python's internals: use json.dumps
        return None
    return enc


_ENCODER = _shared_encoder()


def dumps(obj: Any) -> str:
    """``json.dumps(obj)``."""
    if _ENCODER is None:
        return json.dumps(obj)
    try:
        return "".join(_ENCODER(obj, 0))
    except RecursionError:
        return json.dumps(obj)
