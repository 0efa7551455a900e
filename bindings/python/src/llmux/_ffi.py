"""The one place that knows the C ABI of ``libllmux`` (``include/llmux.h``).

Every ``argtypes``/``restype`` is declared here, together with the
``llmux_event`` structure, a mirror of the result-code enum, the library
search and the version check. Nothing else in the package touches ctypes
declarations; the rest of the package calls :func:`lib` and the helpers.

Library search order (first hit wins):

1. ``$LLMUX_LIBRARY``: a full path to the shared library. When set, nothing
   else is tried.
2. The library bundled next to this file (``llmux/libllmux.so``): the wheel
   built by ``pip install ./bindings/python`` puts it there.
3. ``$LLMUX_ROOT/target/release`` then ``$LLMUX_ROOT/target/debug``, when
   ``LLMUX_ROOT`` names a checkout of the llmux repository.
4. The source checkout this package lives in (a source tree on
   ``PYTHONPATH``): the nearest ancestor directory
   holding ``Cargo.toml`` and ``include/llmux.h``, then its
   ``target/release`` and ``target/debug``.
5. The system loader: ``ctypes.util.find_library("llmux")``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import sys
import threading
from ctypes import (
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, Optional, Tuple

#: The major version of the C ABI this package was written against.
EXPECTED_MAJOR = 0


class Result(enum.IntEnum):
    """Mirror of ``enum llmux_result``."""

    OK = 0
    ERR_NULL_ARGUMENT = 7001
    ERR_INVALID_UTF8 = 7002
    ERR_INVALID_JSON = 7003
    ERR_INVALID_CONFIG = 7004
    ERR_INVALID_REQUEST = 7005
    ERR_UNKNOWN_MODEL = 7006
    ERR_UNKNOWN_PROVIDER = 7007
    ERR_UNKNOWN_ENDPOINT = 7008
    ERR_UNKNOWN_REQUEST = 7009
    ERR_INVALID_ARGUMENT = 7010
    ERR_SHUTTING_DOWN = 7011
    ERR_RUNTIME = 7012
    ERR_PANIC = 7013
    ERR_REQUEST_TOO_LARGE = 7014


class EventKind(enum.IntEnum):
    """Mirror of ``enum llmux_event_kind``. More kinds may be added."""

    CHUNK = 1
    DONE = 2
    ERROR = 3


class Protocol(enum.IntEnum):
    """Mirror of ``enum llmux_protocol``."""

    OPENAI = 0
    ANTHROPIC = 1
    RESPONSES = 2
    GEMINI = 3


class llmux_event(Structure):
    """``struct llmux_event``. ``data`` is kept as a raw pointer so it can be
    copied with :func:`ctypes.string_at` and then freed by
    ``llmux_events_free``."""

    _fields_ = [
        ("request_id", c_uint64),
        ("kind", c_uint32),
        ("data", c_void_p),
        ("data_len", c_size_t),
    ]


class llmux_event_text(Structure):
    """``struct llmux_event`` with ``data`` read as a NUL-terminated string:
    the C ABI puts a NUL after the ``data_len`` bytes, so reading the field
    copies the JSON into ``bytes`` in C."""

    _fields_ = [
        ("request_id", c_uint64),
        ("kind", c_uint32),
        ("data", c_char_p),
        ("data_len", c_size_t),
    ]


_engine_p = c_void_p  # opaque `llmux_engine *`
_str_out = POINTER(c_void_p)  # `char **`, kept raw so it can be freed


def _declare(cdll: ctypes.CDLL) -> None:
    """Declares every function of ``llmux.h`` on ``cdll``."""
    sigs = {
        "llmux_version": ([], c_char_p),
        "llmux_result_text": ([c_uint32], c_char_p),
        "llmux_engine_new": ([c_char_p, c_size_t, POINTER(_engine_p), _str_out], c_uint32),
        "llmux_engine_new_from_file": ([c_char_p, POINTER(_engine_p), _str_out], c_uint32),
        "llmux_engine_free": ([_engine_p], None),
        "llmux_submit": (
            [_engine_p, c_uint32, c_char_p, c_size_t, POINTER(c_uint64), _str_out],
            c_uint32,
        ),
        "llmux_cancel": ([_engine_p, c_uint64], c_uint32),
        "llmux_poll": (
            [_engine_p, POINTER(llmux_event), c_size_t, c_int32, POINTER(c_size_t)],
            c_uint32,
        ),
        "llmux_events_free": ([POINTER(llmux_event), c_size_t], None),
        "llmux_wakeup": ([_engine_p], c_uint32),
        "llmux_engine_fd": ([_engine_p, POINTER(c_int)], c_uint32),
        "llmux_stats": ([_engine_p, _str_out], c_uint32),
        "llmux_string_free": ([c_void_p], None),
    }
    # Added in 0.1 after the first release of the header: optional, so an
    # older library still loads (the Router methods then raise LLMuxError).
    optional = {
        "llmux_health_export": ([_engine_p, _str_out], c_uint32),
        "llmux_health_import": (
            [_engine_p, c_char_p, c_size_t, POINTER(c_size_t), _str_out],
            c_uint32,
        ),
        "llmux_engine_reload": ([_engine_p, c_char_p, c_size_t, _str_out, _str_out], c_uint32),
        "llmux_submit_traced": (
            [_engine_p, c_uint32, c_char_p, c_size_t, c_char_p, POINTER(c_uint64), _str_out],
            c_uint32,
        ),
    }
    for name, (argtypes, restype) in sigs.items():
        fn = getattr(cdll, name)
        fn.argtypes = argtypes
        fn.restype = restype
    for name, (argtypes, restype) in optional.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            continue
        fn.argtypes = argtypes
        fn.restype = restype


def has(cdll: ctypes.CDLL, name: str) -> bool:
    """Whether the library exports ``name``."""
    try:
        getattr(cdll, name)
    except AttributeError:
        return False
    return True


class LibraryNotFoundError(OSError):
    """``libllmux`` could not be found or loaded; the message lists where
    the package looked."""


class LibraryVersionError(ImportError):
    """The loaded ``libllmux`` has an incompatible major version."""


def _lib_names() -> List[str]:
    if sys.platform == "darwin":
        return ["libllmux.dylib"]
    if sys.platform == "win32":
        return ["llmux.dll"]
    return ["libllmux.so"]


def _checkout_root(start: Path) -> Optional[Path]:
    for d in [start, *start.parents]:
        if (d / "Cargo.toml").is_file() and (d / "include" / "llmux.h").is_file():
            return d
    return None


def candidate_paths() -> List[Tuple[str, Path]]:
    """The paths tried, in order, each with the rule that produced it
    (the system loader is tried after these)."""
    names = _lib_names()
    out: List[Tuple[str, Path]] = []
    env = os.environ.get("LLMUX_LIBRARY")
    if env:
        return [("$LLMUX_LIBRARY", Path(env))]
    here = Path(__file__).resolve().parent
    out += [("bundled", here / n) for n in names]
    roots: List[Tuple[str, Path]] = []
    env_root = os.environ.get("LLMUX_ROOT")
    if env_root:
        roots.append(("$LLMUX_ROOT", Path(env_root)))
    found = _checkout_root(here)
    if found is not None:
        roots.append(("checkout", found))
    for rule, root in roots:
        for profile in ("release", "debug"):
            out += [(f"{rule} ({profile})", root / "target" / profile / n) for n in names]
    return out


def _load() -> ctypes.CDLL:
    tried: List[str] = []
    env_set = bool(os.environ.get("LLMUX_LIBRARY"))
    for rule, path in candidate_paths():
        if not path.is_file():
            tried.append(f"  {rule}: {path} (not found)")
            continue
        try:
            return ctypes.CDLL(str(path))
        except OSError as e:
            tried.append(f"  {rule}: {path} ({e})")
    if not env_set:
        sys_name = ctypes.util.find_library("llmux")
        if sys_name:
            try:
                return ctypes.CDLL(sys_name)
            except OSError as e:
                tried.append(f"  system loader: {sys_name} ({e})")
        else:
            tried.append('  system loader: ctypes.util.find_library("llmux") found nothing')
    raise LibraryNotFoundError(
        "could not load libllmux; looked in:\n"
        + "\n".join(tried)
        + "\nInstall the package with `pip install ./bindings/python` from the llmux "
        "checkout (it bundles the library), or set LLMUX_LIBRARY to the full path "
        "of the library."
    )


def _check_version(cdll: ctypes.CDLL) -> str:
    version = str(cdll.llmux_version().decode("utf-8", "replace"))
    try:
        major = int(version.split(".", 1)[0])
    except ValueError:
        raise LibraryVersionError(f"libllmux reports an unparseable version {version!r}") from None
    if major != EXPECTED_MAJOR:
        raise LibraryVersionError(
            f"libllmux {version} is not compatible with this package "
            f"(expects major version {EXPECTED_MAJOR})"
        )
    return version


_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def lib() -> ctypes.CDLL:
    """The loaded, declared and version-checked library (loaded once)."""
    global _lib
    if _lib is None:
        with _lib_lock:
            if _lib is None:
                cdll = _load()
                _declare(cdll)
                _check_version(cdll)
                _lib = cdll
    return _lib


def version() -> str:
    """``llmux_version()`` of the loaded library."""
    return str(lib().llmux_version().decode("utf-8", "replace"))


def result_text(code: int) -> str:
    """``llmux_result_text(code)``."""
    return str(lib().llmux_result_text(code).decode("utf-8", "replace"))


def take_string(ptr: c_void_p) -> Optional[str]:
    """Copies a string llmux allocated and frees it."""
    if not ptr.value:
        return None
    try:
        return str(ctypes.string_at(ptr.value).decode("utf-8", "replace"))
    finally:
        lib().llmux_string_free(ptr)
        ptr.value = None
