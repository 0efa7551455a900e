#!/usr/bin/env bash
# Runs every test of the C++ wrapper and the C packaging:
#   1. cargo build (library) and cargo build -p llmux-fleet (mock server)
#   2. cmake configure + build into target/cpp-build, then ctest: the
#      GoogleTest suite, the header-only check and the examples/c and
#      examples/cpp programs against llmux-fleet
#   3. the same built with Clang (target/cpp-build-clang); skip with
#      LLMUX_CPP_CLANG=0
#   4. the same under AddressSanitizer + UBSan (target/cpp-build-asan);
#      skip with LLMUX_CPP_SANITIZE=0
#   5. packaging/test-install.sh: install to a temporary prefix, then build
#      and run programs through pkg-config and find_package(llmux)
# Exits non-zero on the first failure.
#
# Needs: cargo, cmake (>= 3.16), a C and C++ compiler, pkg-config and
# GoogleTest (Debian: cmake g++ clang pkg-config libgtest-dev; scripts/setup
# installs them).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

step() { echo "== cpp: $*"; }

step "cargo build (library, llmux-fleet)"
# --workspace, as every other step: the same features, so nothing is built twice.
cargo build --workspace

build_and_test() {
  local dir=$1
  shift
  cmake -S bindings/cpp -B "$dir" -DCMAKE_BUILD_TYPE=Debug "$@" > "$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log" >&2; return 1; }
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 120
}

mkdir -p target
step "cmake + ctest, GCC (target/cpp-build)"
build_and_test target/cpp-build -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++

if [ "${LLMUX_CPP_CLANG:-1}" != 0 ]; then
  step "cmake + ctest, Clang (target/cpp-build-clang)"
  build_and_test target/cpp-build-clang -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
fi

if [ "${LLMUX_CPP_SANITIZE:-1}" != 0 ]; then
  step "cmake + ctest under AddressSanitizer + UBSan (target/cpp-build-asan)"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} build_and_test target/cpp-build-asan -DLLMUX_SANITIZE=ON
fi

step "packaging/test-install.sh"
packaging/test-install.sh --no-build

step "all C++ and packaging tests passed"
