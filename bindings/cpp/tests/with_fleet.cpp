// with_fleet: runs a command against a fresh llmux-fleet.
//
// usage: with_fleet [--servers a,b] -- CMD [ARGS...]
//
// Starts llmux-fleet ($LLMUX_FLEET or the default path) with default
// behavior servers (a,b unless --servers says otherwise), replaces each
// argument of the form @NAME with the base URL of server NAME, runs the
// command, stops the fleet and exits with the command's status. ctest uses
// it to run the examples.

#include "fleet.hpp"

#include <sys/wait.h>

#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    std::string servers = "a,b";
    int i = 1;
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (a == "--servers" && i + 1 < argc) {
            servers = argv[++i];
        } else {
            std::cerr << "usage: with_fleet [--servers a,b] -- CMD [ARGS...]\n";
            return 2;
        }
    }
    if (i >= argc) {
        std::cerr << "with_fleet: no command\n";
        return 2;
    }

    std::string config = R"({"servers":[)";
    std::stringstream names(servers);
    std::string name;
    bool first = true;
    while (std::getline(names, name, ',')) {
        config += (first ? "" : ",") + std::string(R"({"name":")") + name + R"(","behavior":{}})";
        first = false;
    }
    config += "]}";

    try {
        llmux_test::Fleet fleet(config);
        std::vector<std::string> args;
        for (int k = i; k < argc; ++k) {
            std::string a = argv[k];
            args.push_back(a.size() > 1 && a[0] == '@' ? fleet.url(a.substr(1)) : a);
        }
        std::vector<char*> cargv;
        for (auto& a : args) cargv.push_back(a.data());
        cargv.push_back(nullptr);
        pid_t pid;
        int rc = posix_spawnp(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ);
        if (rc != 0) {
            std::cerr << "with_fleet: cannot run " << cargv[0] << ": " << std::strerror(rc) << "\n";
            return 127;
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        std::cerr << "with_fleet: " << cargv[0] << " died (status " << status << ")\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "with_fleet: " << e.what() << "\n";
        return 1;
    }
}
