// fleet.hpp: starts the llmux-fleet mock upstream binary for tests.
//
// The binary is $LLMUX_FLEET, else LLMUX_DEFAULT_FLEET (set by CMake to
// target/debug/llmux-fleet). It runs with --exit-on-stdin-eof: we hold the
// write end of its stdin, so it exits when the Fleet is destroyed or when
// this process dies, whichever comes first.

#ifndef LLMUX_TEST_FLEET_HPP
#define LLMUX_TEST_FLEET_HPP

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

#ifndef LLMUX_DEFAULT_FLEET
#define LLMUX_DEFAULT_FLEET "../../target/debug/llmux-fleet"
#endif

namespace llmux_test {

class Fleet {
public:
    // `config` is the --config JSON: {"servers":[{"name":"a","behavior":{}}]}.
    explicit Fleet(const std::string& config) {
        const char* env = std::getenv("LLMUX_FLEET");
        std::string bin = (env != nullptr && *env != '\0') ? env : LLMUX_DEFAULT_FLEET;

        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        if (pipe2(out, O_CLOEXEC) != 0) {
            close(in[0]);
            close(in[1]);
            throw std::runtime_error("pipe2 failed");
        }
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        std::vector<std::string> args = {bin, "--config", config, "--exit-on-stdin-eof"};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int rc = posix_spawn(&pid_, bin.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        close(in[0]);
        close(out[1]);
        stdin_ = in[1];
        stdout_ = out[0];
        if (rc != 0) {
            pid_ = -1;
            cleanup();
            throw std::runtime_error("cannot start " + bin + ": " + std::strerror(rc) +
                                     " (build it with `cargo build -p llmux-fleet` or set LLMUX_FLEET)");
        }
        std::string line;
        char c;
        for (;;) {
            ssize_t n = read(stdout_, &c, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || c == '\n') break;
            line.push_back(c);
        }
        listing_ = line;
        parse(line);
        if (urls_.empty()) {
            cleanup();
            throw std::runtime_error("llmux-fleet printed no servers: '" + line + "'");
        }
    }

    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;
    ~Fleet() { cleanup(); }

    // http://127.0.0.1:PORT of the server called `name`.
    const std::string& url(const std::string& name) const {
        auto it = urls_.find(name);
        if (it == urls_.end()) throw std::runtime_error("no fleet server " + name);
        return it->second;
    }
    const std::map<std::string, std::string>& urls() const { return urls_; }
    const std::string& listing() const { return listing_; }

private:
    // The line is {"servers":[{"name":"a","port":1,"base_url":"http://..."},...]};
    // names and URLs hold no quotes or escapes.
    void parse(const std::string& line) {
        std::size_t pos = 0;
        for (;;) {
            std::size_t n = line.find("\"name\":\"", pos);
            if (n == std::string::npos) break;
            n += 8;
            std::size_t ne = line.find('"', n);
            std::size_t u = line.find("\"base_url\":\"", ne);
            if (ne == std::string::npos || u == std::string::npos) break;
            u += 12;
            std::size_t ue = line.find('"', u);
            if (ue == std::string::npos) break;
            urls_[line.substr(n, ne - n)] = line.substr(u, ue - u);
            pos = ue;
        }
    }

    void cleanup() {
        if (stdin_ >= 0) close(stdin_);  // EOF: the fleet exits
        stdin_ = -1;
        if (pid_ > 0) {
            int status;
            while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
        }
        pid_ = -1;
        if (stdout_ >= 0) close(stdout_);
        stdout_ = -1;
    }

    pid_t pid_ = -1;
    int stdin_ = -1;
    int stdout_ = -1;
    std::string listing_;
    std::map<std::string, std::string> urls_;
};

}  // namespace llmux_test

#endif  // LLMUX_TEST_FLEET_HPP
