// header_only_a/b: llmux.hpp included in two translation units of one
// program must link (everything inline) and compile with strict warnings.
#include "llmux.hpp"

#include <cstdio>

std::string describe_b();

int main() {
    // An empty engine: every call fails like a NULL engine in C.
    llmux::Engine empty;
    auto r = empty.try_submit(llmux::Protocol::OpenAI, "{}");
    if (r.ok() || r.error().code() != llmux::ErrorCode::NullArgument) return 1;
    std::printf("llmux %s, %s\n", std::string(llmux::version()).c_str(), describe_b().c_str());
    return llmux::version() == LLMUX_VERSION ? 0 : 1;
}
