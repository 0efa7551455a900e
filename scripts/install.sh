#!/usr/bin/env bash
# Installs the llmux C library, its headers, a pkg-config file and a CMake
# package into PREFIX (default /usr/local):
#
#   PREFIX/lib/libllmux.so.VERSION, with the links libllmux.so.MAJOR (its
#     SONAME) and libllmux.so; PREFIX/lib/libllmux.a
#   PREFIX/include/llmux.h, PREFIX/include/llmux.hpp (the C++17 wrapper)
#   PREFIX/lib/pkgconfig/llmux.pc (and llmux-static.pc: libllmux.a)
#   PREFIX/lib/cmake/llmux/llmuxConfig.cmake, llmuxConfigVersion.cmake
#
# usage: scripts/install.sh [--debug] [--no-build] [PREFIX]
#        scripts/install.sh --cli [--debug] [--no-build] [BINDIR]
#   --cli       install only the `llmux` command (`llmux serve`, `check`,
#               `route`) into BINDIR, default ~/.local/bin (/usr/local/bin
#               as root), and say whether BINDIR is on PATH. The same as
#               `cargo install --path gateway`, which puts it in ~/.cargo/bin
#   --debug     install target/debug (for tests) instead of target/release
#   --no-build  do not run cargo; install the existing build as it is
# env DESTDIR   stage the files under $DESTDIR$PREFIX (for packagers); the
#               installed files still name PREFIX
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

profile=release
build=1
cli=0
prefix=/usr/local
prefix_set=0
for arg in "$@"; do
  case "$arg" in
    --cli) cli=1 ;;
    --debug) profile=debug ;;
    --release) profile=release ;;
    --no-build) build=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *)
      if [ "$prefix_set" = 1 ]; then echo "install.sh: more than one PREFIX" >&2; exit 2; fi
      prefix=$arg; prefix_set=1 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)

target_dir() {
  (cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
}

# --cli: the `llmux` binary only.
if [ "$cli" = 1 ]; then
  if [ "$prefix_set" = 1 ]; then
    bindir=$prefix
  elif [ "$(id -u)" = 0 ]; then
    bindir=/usr/local/bin
  else
    bindir=$HOME/.local/bin
  fi
  if [ "$build" = 1 ]; then
    flags=()
    [ "$profile" = release ] && flags=(--release)
    (cd "$root" && cargo build "${flags[@]}" -p llmux-gateway --bin llmux)
  fi
  exe="$(target_dir)"
  exe="${exe:-$root/target}/$profile/llmux"
  if [ ! -x "$exe" ]; then
    echo "install.sh: $exe is missing (run without --no-build)" >&2
    exit 1
  fi
  install -d "${DESTDIR:-}$bindir"
  install -m 0755 "$exe" "${DESTDIR:-}$bindir/llmux"
  echo "installed llmux ($profile build) to ${DESTDIR:-}$bindir/llmux"
  case ":$PATH:" in
    *":$bindir:"*) echo "run: llmux --help" ;;
    *) echo "note: $bindir is not on PATH: add it, e.g. echo 'export PATH=\"$bindir:\$PATH\"' >> ~/.bashrc" ;;
  esac
  exit 0
fi
case "$prefix" in
  /*) ;;
  *) prefix="$(pwd)/$prefix" ;;  # the .pc file needs an absolute path
esac
prefix=${prefix%/}
[ -n "$prefix" ] || prefix=/

# `cargo rustc` with only the C crate types: with the rlib in the same
# build, cargo would skip the release profile's LTO.
if [ "$build" = 1 ]; then
  flags=()
  [ "$profile" = release ] && flags=(--release)
  (cd "$root" && cargo rustc "${flags[@]}" --lib --crate-type cdylib --crate-type staticlib)
fi

target_dir=$(target_dir)
libdir_src="${target_dir:-$root/target}/$profile"
for f in libllmux.so libllmux.a; do
  if [ ! -f "$libdir_src/$f" ]; then
    echo "install.sh: $libdir_src/$f is missing (run without --no-build)" >&2
    exit 1
  fi
done

version=$(sed -n 's/^#define LLMUX_VERSION "\(.*\)"$/\1/p' "$root/include/llmux.h")
if [ -z "$version" ]; then
  echo "install.sh: no LLMUX_VERSION in include/llmux.h" >&2
  exit 1
fi
pointer_bits=$(getconf LONG_BIT 2>/dev/null || echo 64)
pointer_bytes=$((pointer_bits / 8))

dest="${DESTDIR:-}$prefix"
libdir="$prefix/lib"

install -d "$dest/lib" "$dest/include" "$dest/lib/pkgconfig" "$dest/lib/cmake/llmux"
major=${version%%.*}
install -m 0755 "$libdir_src/libllmux.so" "$dest/lib/libllmux.so.$version"
ln -sfn "libllmux.so.$version" "$dest/lib/libllmux.so.$major"
ln -sfn "libllmux.so.$major" "$dest/lib/libllmux.so"
install -m 0644 "$libdir_src/libllmux.a" "$dest/lib/libllmux.a"
install -m 0644 "$root/include/llmux.h" "$dest/include/llmux.h"
install -m 0644 "$root/bindings/cpp/llmux.hpp" "$dest/include/llmux.hpp"

# Replaces @NAME@ placeholders. Paths go through sed, so escape its specials.
fill() {
  local esc_prefix
  esc_prefix=$(printf '%s' "$prefix" | sed 's/[\\|&]/\\&/g')
  sed -e "s|@PREFIX@|$esc_prefix|g" \
      -e "s|@VERSION@|$version|g" \
      -e "s|@MAJOR@|$major|g" \
      -e "s|@POINTER_BITS@|$pointer_bits|g" \
      -e "s|@POINTER_BYTES@|$pointer_bytes|g" \
      "$1" > "$2"
  chmod 0644 "$2"
}
fill "$root/packaging/llmux.pc.in" "$dest/lib/pkgconfig/llmux.pc"
fill "$root/packaging/llmux-static.pc.in" "$dest/lib/pkgconfig/llmux-static.pc"
fill "$root/packaging/llmuxConfig.cmake.in" "$dest/lib/cmake/llmux/llmuxConfig.cmake"
fill "$root/packaging/llmuxConfigVersion.cmake.in" "$dest/lib/cmake/llmux/llmuxConfigVersion.cmake"

echo "installed llmux $version ($profile build) to $dest"
case "$libdir" in
  /usr/lib|/usr/local/lib|/lib) [ -z "${DESTDIR:-}" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null && ldconfig || true ;;
  *) echo "note: $libdir is not a default library path: set LD_LIBRARY_PATH or an rpath to run programs linked against libllmux.so" ;;
esac
