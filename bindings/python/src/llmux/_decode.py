"""Decoding llmux's event payloads (UTF-8 JSON written by the library).

``json.loads(bytes)`` spends about half its time on a short chunk in its
Python wrapper (encoding detection, a decoder method call, two whitespace
regex matches). :func:`loads` calls the C scanner of the standard ``json``
module directly and falls back to ``json.loads`` for anything the scanner
does not take whole (surrounding whitespace, invalid JSON, invalid UTF-8),
so results and errors are exactly ``json.loads``'s.
"""

from __future__ import annotations

import json
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
