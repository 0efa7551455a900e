#!/usr/bin/env bash
# Follows bindings/cpp/README.md's "From source, with CMake (no install)"
# verbatim, outside the checkout: a new project in a temporary directory
# whose CMakeLists.txt is the README's, main.cpp the README's first program
# (its base URL replaced by the mock fleet's), configured, built and run by
# the README's command line, once with GCC and once with Clang. The one
# change: FetchContent takes the source from this checkout
# (FETCHCONTENT_SOURCE_DIR_LLMUX, as the README describes for local
# checkouts), since the git host is not reachable here. Then the
# add_subdirectory variant, with a C program on llmux::llmux_static.
# cargo shares the checkout's target directory (CARGO_TARGET_DIR).
source "$(dirname "$0")/lib.sh"
readme="$root/bindings/cpp/README.md"
section="### From source, with CMake (no install)"
new_tmp
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

start_fleet openai
mkdir -p "$tmp/app"
readme_block "$readme" "$section" cmake > "$tmp/app/CMakeLists.txt"
readme_block "$readme" "### A first program" cpp \
  | sed "s|https://api.openai.com/v1|${fleet_url[openai]}/v1|" > "$tmp/app/main.cpp"
grep -q "${fleet_url[openai]}" "$tmp/app/main.cpp" || die "the README program changed: update this test"
build_cmd=$(readme_block "$readme" "$section" sh)
[ -n "$build_cmd" ] || die "no build command in $readme"

# The README's configure command, with the local source for FetchContent.
cmake() {
  if [ "$1" = -S ]; then command cmake "$@" -DFETCHCONTENT_SOURCE_DIR_LLMUX="$root"; else command cmake "$@"; fi
}
export -f cmake
export root

check_run() {  # check_run LOG: the program streamed and got its routing record
  grep -q '"object":"chat.completion.chunk"' "$1" || die "no chunks"
  grep -q '"type":"done".*"endpoint":"openai/default"' "$1" || die "no done event from openai/default"
}

for compiler in gcc:g++ clang:clang++; do
  export CC=${compiler%%:*} CXX=${compiler##*:}
  step "FetchContent, $CXX: $build_cmd"
  rm -rf "$tmp/app/build"
  (cd "$tmp/app" && bash -euo pipefail -c "$build_cmd") > "$tmp/run-$CC.log" 2>&1 \
    || { cat "$tmp/run-$CC.log"; die "build or run failed with $CXX"; }
  grep -E "cargo: building libllmux|Finished .release. profile" "$tmp/run-$CC.log" || die "cargo did not run"
  want=$([ "$CC" = gcc ] && echo GNU || echo Clang)
  grep -q "The CXX compiler identification is $want" "$tmp/run-$CC.log" || die "not built with $CXX"
  check_run "$tmp/run-$CC.log"
  readelf -d "$tmp/app/build/app" | grep -q "(NEEDED).*\[libllmux.so.0\]" || die "app does not need libllmux.so.0"
done

step "add_subdirectory(third_party/llmux), C on llmux::llmux_static"
mkdir -p "$tmp/sub/third_party"
ln -s "$root" "$tmp/sub/third_party/llmux"
cat > "$tmp/sub/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(sub LANGUAGES C)
add_subdirectory(third_party/llmux)
add_executable(hello hello.c)
target_compile_options(hello PRIVATE -Wall -Wextra -Wpedantic -Werror)
target_link_libraries(hello PRIVATE llmux::llmux_static)
CMAKE
cat > "$tmp/sub/hello.c" <<'C'
#include <llmux.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    if (strcmp(llmux_version(), LLMUX_VERSION) != 0) return 1;
    printf("llmux %s, static\n", llmux_version());
    return 0;
}
C
export CC=gcc CXX=g++
command cmake -S "$tmp/sub" -B "$tmp/sub/build" > "$tmp/sub.log" 2>&1 || { cat "$tmp/sub.log"; die "configure failed"; }
command cmake --build "$tmp/sub/build" >> "$tmp/sub.log" 2>&1 || { cat "$tmp/sub.log"; die "build failed"; }
if readelf -d "$tmp/sub/build/hello" | grep -q libllmux; then die "hello needs libllmux.so"; fi
"$tmp/sub/build/hello"
step "ok"
