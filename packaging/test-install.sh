#!/usr/bin/env bash
# Tests the installed package: installs the debug build into a temporary
# prefix with scripts/install.sh, then builds and runs
#   1. a C program with  cc $(pkg-config --cflags --libs llmux)
#   2. the same program linked statically (pkg-config --static, libllmux.a)
#   3. a CMake project using find_package(llmux 0.1 REQUIRED) and the
#      imported targets llmux::llmux (C) and llmux::cpp (C++ wrapper), and
#      checking which version requests the package accepts
# Each program prints llmux_version and creates and frees an engine.
#
# usage: packaging/test-install.sh [--no-build] [--keep]
#   --no-build  install the existing target/debug build without running cargo
#   --keep      keep the temporary directory (its path is printed)
# env LLMUX_TEST_STATIC=0 skips the static link (it is the slowest step).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/packaging/lib.sh"   # readme_block
install_args=(--debug)
keep=0
for arg in "$@"; do
  case "$arg" in
    --no-build) install_args+=(--no-build) ;;
    --keep) keep=1 ;;
    *) echo "test-install.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmux-install-test.XXXXXX")
if [ "$keep" = 1 ]; then
  echo "keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi
prefix="$tmp/prefix"
version=$(sed -n 's/^#define LLMUX_VERSION "\(.*\)"$/\1/p' "$root/include/llmux.h")

step() { echo "== test-install: $*"; }

step "install (debug build) to $prefix"
"$root/scripts/install.sh" "${install_args[@]}" "$prefix"
for f in lib/libllmux.so lib/libllmux.a include/llmux.h include/llmux.hpp \
         lib/pkgconfig/llmux.pc lib/cmake/llmux/llmuxConfig.cmake \
         lib/cmake/llmux/llmuxConfigVersion.cmake; do
  [ -f "$prefix/$f" ] || { echo "missing $prefix/$f" >&2; exit 1; }
done
major=${version%%.*}
step "libllmux.so -> libllmux.so.$major -> libllmux.so.$version, SONAME libllmux.so.$major"
[ "$(readlink "$prefix/lib/libllmux.so")" = "libllmux.so.$major" ] || { echo "libllmux.so is not a link to libllmux.so.$major" >&2; exit 1; }
[ "$(readlink "$prefix/lib/libllmux.so.$major")" = "libllmux.so.$version" ] || { echo "libllmux.so.$major is not a link to libllmux.so.$version" >&2; exit 1; }
readelf -d "$prefix/lib/libllmux.so.$version" | grep -q "(SONAME).*\[libllmux.so.$major\]" \
  || { echo "libllmux.so.$version has no SONAME libllmux.so.$major" >&2; exit 1; }

# The program both builds use: version, a good config, a bad one.
mkdir -p "$tmp/src"
cat > "$tmp/src/hello.c" <<'EOF'
#include <llmux.h>

#include <stdio.h>
#include <string.h>

int main(void) {
    const char *cfg =
        "{\"providers\":[{\"slug\":\"local\",\"protocol\":\"openai\","
        "\"base_url\":\"http://127.0.0.1:9/v1\"}],"
        "\"models\":[{\"slug\":\"demo/chat\",\"endpoints\":"
        "[{\"provider\":\"local\",\"upstream_model\":\"m\"}]}]}";
    llmux_engine *eng = NULL;
    char *err = NULL;
    llmux_result rc = llmux_engine_new(cfg, strlen(cfg), &eng, &err);
    if (rc != LLMUX_RESULT_OK) {
        fprintf(stderr, "llmux_engine_new: %s: %s\n", llmux_result_text(rc), err ? err : "");
        llmux_string_free(err);
        return 1;
    }
    llmux_engine_free(eng);

    const char *bad = "{\"providers\":[],\"models\":[{\"slug\":\"x/y\",\"endpoints\":"
                      "[{\"provider\":\"acme\",\"upstream_model\":\"m\"}]}]}";
    rc = llmux_engine_new(bad, strlen(bad), &eng, &err);
    if (rc != LLMUX_RESULT_ERR_INVALID_CONFIG || err == NULL || strstr(err, "acme") == NULL) {
        fprintf(stderr, "bad config: want INVALID_CONFIG naming acme, got %u\n", (unsigned)rc);
        return 1;
    }
    llmux_string_free(err);
    if (strcmp(llmux_version(), LLMUX_VERSION) != 0) {
        fprintf(stderr, "header %s, library %s\n", LLMUX_VERSION, llmux_version());
        return 1;
    }
    printf("llmux %s: engine created and freed\n", llmux_version());
    return 0;
}
EOF

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
step "pkg-config: $(pkg-config --modversion llmux)"
[ "$(pkg-config --modversion llmux)" = "$version" ] || { echo "pkg-config version mismatch" >&2; exit 1; }

step "C, shared: cc \$(pkg-config --cflags --libs llmux)"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Wpedantic -Werror "$tmp/src/hello.c" -o "$tmp/hello-shared" \
  $(pkg-config --cflags --libs llmux)
readelf -d "$tmp/hello-shared" | grep -q "(NEEDED).*\[libllmux.so.$major\]" \
  || { echo "hello-shared does not need libllmux.so.$major (its SONAME)" >&2; exit 1; }
LD_LIBRARY_PATH="$prefix/lib" "$tmp/hello-shared"

if [ "${LLMUX_TEST_STATIC:-1}" != 0 ]; then
  step "C, static: libllmux.a with \$(pkg-config --static --libs llmux)"
  # libllmux.a by path, plus what Libs.private says it needs.
  # shellcheck disable=SC2046
  cc -std=c11 -Wall -Wextra -Wpedantic -Werror "$tmp/src/hello.c" -o "$tmp/hello-static" \
    $(pkg-config --cflags llmux) "$(pkg-config --variable=libdir llmux)/libllmux.a" \
    $(pkg-config --static --libs-only-l llmux | sed 's/-lllmux//')
  if readelf -d "$tmp/hello-static" 2>/dev/null | grep -q "NEEDED.*libllmux"; then
    echo "hello-static still needs libllmux.so" >&2; exit 1
  fi
  env -u LD_LIBRARY_PATH "$tmp/hello-static"
fi

step "docs/c-api.md's pkg-config lines, verbatim but for PREFIX (shared, then static)"
mkdir -p "$tmp/readme"
cp "$tmp/src/hello.c" "$tmp/readme/app.c"
readme_block "$root/docs/c-api.md" "pkg-config:" sh | sed "s|PREFIX|$prefix|g" > "$tmp/readme/build.sh"
[ "$(grep -c '^cc app.c' "$tmp/readme/build.sh")" = 2 ] || { echo "docs/c-api.md's pkg-config block changed" >&2; exit 1; }
(
  cd "$tmp/readme"
  head -n 2 build.sh > shared.sh && bash -eu shared.sh && LD_LIBRARY_PATH="$prefix/lib" ./a.out
  readelf -d a.out | grep -q "(NEEDED).*\[libllmux.so.$major\]" || { echo "a.out does not need libllmux.so.$major" >&2; exit 1; }
  rm a.out
  { head -n 1 build.sh; sed -n 3p build.sh; } > static.sh && bash -eu static.sh && env -u LD_LIBRARY_PATH ./a.out
  if readelf -d a.out | grep -q libllmux; then echo "the static a.out needs libllmux.so" >&2; exit 1; fi
)

step "CMake: find_package(llmux) + llmux::llmux / llmux::cpp"
mkdir -p "$tmp/cmake-project"
cp "$tmp/src/hello.c" "$tmp/cmake-project/hello.c"
cat > "$tmp/cmake-project/hello.cpp" <<'EOF'
#include <llmux.hpp>

#include <iostream>

int main() {
    auto engine = llmux::Engine::from_json(
        R"({"providers":[{"slug":"local","protocol":"openai","base_url":"http://127.0.0.1:9/v1"}],)"
        R"("models":[{"slug":"demo/chat","endpoints":[{"provider":"local","upstream_model":"m"}]}]})");
    try {
        engine.submit(llmux::Protocol::OpenAI, R"({"model":"nope/x","messages":[]})");
        return 1;
    } catch (const llmux::Error& e) {
        if (e.code() != llmux::ErrorCode::UnknownModel) return 1;
    }
    std::cout << "llmux " << llmux::version() << " (C++): engine created, stats "
              << engine.stats().size() << " bytes\n";
    return 0;
}
EOF
cat > "$tmp/cmake-project/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(llmux_consumer LANGUAGES C CXX)
find_package(llmux 0.1 REQUIRED)
if(NOT TARGET llmux::llmux OR NOT TARGET llmux::cpp OR NOT TARGET llmux::llmux_static)
  message(FATAL_ERROR "llmux targets missing")
endif()
message(STATUS "found llmux ${llmux_VERSION} in ${llmux_DIR}")
add_executable(x hello.c)
target_compile_options(x PRIVATE -Wall -Wextra -Wpedantic -Werror)
target_link_libraries(x llmux::llmux)
add_executable(xx hello.cpp)
target_compile_options(xx PRIVATE -Wall -Wextra -Wpedantic -Werror)
target_link_libraries(xx llmux::cpp)
# The version file: which requests this 0.1.x package satisfies.
foreach(req 0 0.1 0.1.0)
  find_package(llmux ${req} QUIET)
  if(NOT llmux_FOUND)
    message(FATAL_ERROR "find_package(llmux ${req}) should accept ${llmux_VERSION}")
  endif()
endforeach()
foreach(req 0.2 0.99 1.0 9.9.9)
  find_package(llmux ${req} QUIET)
  if(llmux_FOUND)
    message(FATAL_ERROR "find_package(llmux ${req}) should reject this package")
  endif()
endforeach()
message(STATUS "version checks ok")
EOF
cmake -S "$tmp/cmake-project" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Debug > "$tmp/cmake-configure.log" 2>&1 || { cat "$tmp/cmake-configure.log" >&2; exit 1; }
grep -E "found llmux|version checks ok" "$tmp/cmake-configure.log"
cmake --build "$tmp/cmake-build" -j 2 > "$tmp/cmake-build.log" 2>&1 || { cat "$tmp/cmake-build.log" >&2; exit 1; }
for exe in x xx; do
  readelf -d "$tmp/cmake-build/$exe" | grep -q "(NEEDED).*\[libllmux.so.$major\]" \
    || { echo "$exe does not need libllmux.so.$major (its SONAME)" >&2; exit 1; }
done
LD_LIBRARY_PATH="$prefix/lib" "$tmp/cmake-build/x"
LD_LIBRARY_PATH="$prefix/lib" "$tmp/cmake-build/xx"

step "all passed"
