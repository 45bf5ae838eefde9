// The agent's side of the socket: the Listener (a socket in a directory of this user's alone)
// and the Agent that accepts connections on it, refuses other users, and serves one request per
// connection on the vault it keeps open.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/protocol.hpp"
#include "base/posix.hpp"
#include "kms/audit.hpp"
#include "kms/files.hpp"
#include "kms/service.hpp"

namespace kms::agent {

struct Limits {
  std::chrono::seconds idle;      // stop after this long without a request
  std::chrono::seconds lifetime;  // stop this long after starting
};

// How the agent runs a client's command line: kmsctl's own parser and commands, in this process
// (the CLI hands them over, so that this module knows nothing of CLI11).
struct CommandLine {
  // Decides, once the command line is parsed, whether the agent runs it: the command as parsed
  // ({"secret", "get"}) and the absolute path of the vault it names.
  using Admit =
      std::function<bool(const std::vector<std::string>& path, const std::filesystem::path& vault)>;
  // Parses argv (argv[0] is "kmsctl") and, if `admit` lets it, runs it on `svc`; returns its
  // exit code (0 when not admitted). Errors are reported on standard error, as any command's.
  std::function<int(const std::vector<const char*>& argv, Service& svc, const Admit& admit)> run;
  // Reports an error as a command does, on standard error; returns its exit code.
  std::function<int(const Error& e)> report;
};

// SIGTERM, SIGINT and SIGHUP end Agent::serve (without SA_RESTART: poll returns at once).
void catch_stop_signals();

// The listening socket: in a fresh 0700 directory (or at --socket, in a directory only this
// user can write); removed, with that directory, when the agent ends.
class Listener {
 public:
  explicit Listener(const std::string& socket_flag);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener() { close(); }

  // In the agent's own process: a client reads the credentials of the process that listens
  // (SO_PEERCRED), `agent stop` waits for that pid to exit.
  void listen();
  int fd() const noexcept { return fd_.get(); }
  const std::filesystem::path& path() const noexcept { return path_; }
  // Stops listening and removes the socket (and its directory).
  void close() noexcept;
  // In the process that started the agent: the socket is the agent's to remove.
  void release() noexcept {
    path_.clear();
    dir_.clear();
  }

 private:
  posix::Fd fd_;
  std::filesystem::path path_;
  std::filesystem::path dir_;  // made by us: removed too
};

class Agent {
 public:
  Agent(Service& svc, const Listener& listener, std::filesystem::path vault, Limits limits,
        CommandLine command_line);

  void record_start();
  // Serves until stopped; returns why it stopped.
  std::string serve();
  // agent.stop, unless the vault is no longer the one opened (a record there would move the
  // token anchor away from the live log).
  void record_stop(const std::string& reason) noexcept;
  // After `agent stop`, with the socket removed: tells the client, which can start another at
  // once.
  void stopped();

 private:
  static constexpr std::string_view kVaultGone = "vault replaced";

  std::string resource();
  std::optional<std::string> handle(posix::Fd& connection);
  void write_exec_values(const Request& req, int pipe);
  void refuse_stranger(int conn, Caller who);
  std::optional<int> run_with(std::vector<posix::Fd>& fds, const std::string& vault,
                              const std::vector<const char*>& argv);
  void reply(int conn, const Reply& r);
  nlohmann::json status_json();

  Service& svc_;
  const Listener& listener_;
  std::filesystem::path vault_;
  std::optional<files::FileId> vault_id_;
  Limits limits_;
  CommandLine command_line_;
  Caller self_;
  std::string started_;
  std::int64_t requests_ = 0;
  posix::Fd stopped_by_;  // the connection of `agent stop`
};

}  // namespace kms::agent
