"""Builds libllmux with cargo (through setuptools-rust) and bundles it in a
platform wheel, next to the package as ``llmux/libllmux.so``.

From a checkout the crate is the repository's own ``Cargo.toml`` (two
directories up); an sdist carries a standalone copy of it in ``rust/``.
The library does not use the Python C API, so the wheel is tagged
``py3-none-<platform>``: one wheel serves every Python 3 on that platform.
"""

import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension
from setuptools_rust.build import build_rust

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent
VENDORED = "rust"
# What the library needs to build (tests, benches and other crates are not).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "src"]
# Cargo.toml sections an sdist leaves out: the workspace, dev-only targets.
DROPPED_SECTIONS = re.compile(r"^\[(workspace|dev-dependencies|\[bench\]|\[test\]|\[example\])\]")

if sys.platform == "darwin":
    LIB_NAME = "libllmux.dylib"
elif sys.platform == "win32":
    LIB_NAME = "llmux.dll"
else:
    LIB_NAME = "libllmux.so"


def manifest_path() -> str:
    """The crate's Cargo.toml, relative to this file."""
    if (CHECKOUT / "Cargo.toml").is_file() and (CHECKOUT / "include" / "llmux.h").is_file():
        return "../../Cargo.toml"
    if (HERE / VENDORED / "Cargo.toml").is_file():
        return f"{VENDORED}/Cargo.toml"
    raise SystemExit(
        "llmux: the Rust crate was not found: build from a checkout of the llmux "
        "repository (bindings/python) or from an sdist that contains rust/"
    )


def standalone_manifest(text: str) -> str:
    """Cargo.toml without the workspace and dev-only parts, as its own workspace."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = bool(DROPPED_SECTIONS.match(line))
        if not skipping:
            out.append(line)
    return "\n".join(out).rstrip() + "\n\n[workspace]\n"


def use_own_target_dir() -> None:
    """Builds into ``<target>/python`` (``$LLMUX_PYTHON_TARGET_DIR`` if set).

    In the checkout's shared target directory, this build (``cargo rustc
    --lib --crate-type cdylib``, from setuptools-rust) and ``cargo build
    --release`` (the crate types of Cargo.toml: cdylib, staticlib, rlib)
    are the same cargo unit with different fingerprints: each replaced the
    other's and relinked the library with the release profile's fat LTO,
    about two minutes each way. In a directory of its own, the Python build
    pays for its dependencies once and then only rebuilds what changed.
    """
    own = os.environ.get("LLMUX_PYTHON_TARGET_DIR")
    if not own:
        base = os.environ.get("CARGO_TARGET_DIR") or str((HERE / Path(manifest_path()).parent / "target").resolve())
        own = os.path.join(base, "python")
    os.environ["CARGO_TARGET_DIR"] = own


class BuildRust(build_rust):
    """Names the bundled library ``libllmux.so`` (not an extension-module name)."""

    def get_dylib_ext_path(self, ext: RustExtension, target_fname: str) -> str:
        return str(Path(super().get_dylib_ext_path(ext, target_fname)).with_name(LIB_NAME))


class BdistWheel(bdist_wheel):
    """A platform wheel that does not depend on the Python version or ABI."""

    def get_tag(self) -> "tuple[str, str, str]":
        _, _, plat = super().get_tag()
        return "py3", "none", plat


class Sdist(sdist):
    """Puts a standalone copy of the crate into the sdist, as ``rust/``."""

    def make_release_tree(self, base_dir: str, files: "list[str]") -> None:
        super().make_release_tree(base_dir, files)
        src_root = HERE / Path(manifest_path()).parent
        dest = Path(base_dir) / VENDORED
        dest.mkdir(exist_ok=True)
        for name in CRATE_FILES:
            src = src_root / name
            if src.is_dir():
                shutil.copytree(src, dest / name, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dest / name)
        toml = dest / "Cargo.toml"
        toml.write_text(standalone_manifest(toml.read_text()))


use_own_target_dir()
setup(
    rust_extensions=[
        RustExtension("llmux.libllmux", path=manifest_path(), binding=Binding.NoBinding)
    ],
    cmdclass={"build_rust": BuildRust, "bdist_wheel": BdistWheel, "sdist": Sdist},
    zip_safe=False,
)
