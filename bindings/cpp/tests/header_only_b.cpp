#include "llmux.hpp"

#include <string>

std::string describe_b() {
    llmux::Result<void> ok;
    llmux::Result<int> err(llmux::Error(llmux::ErrorCode::UnknownRequest, ""));
    return std::string(ok ? "ok" : "!ok") + ", " + err.error().what();
}
