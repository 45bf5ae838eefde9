// The agent's side of the socket: the Listener (a socket in a directory of this user's alone)
// and the Agent that accepts connections on it and serves their requests on the vault it keeps
// open, each authorised for the connection's caller (docs/FORMAT.md §13).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/protocol.hpp"
#include "audit/log.hpp"
#include "base/posix.hpp"
#include "kms/files.hpp"
#include "kms/service.hpp"

namespace kms::agent {

struct Limits {
  std::chrono::seconds idle;      // stop after this long without a request
  std::chrono::seconds lifetime;  // stop this long after starting
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

// Serves requests (docs/FORMAT.md §13) on the vault it keeps open: one thread per connection
// reads its client's requests, so that a client that sends slowly holds no one else; each
// request then runs under one lock on the vault, in the order they take it, which is the
// order of their audit records; the reply is written after the lock is released.
class Agent {
 public:
  Agent(Service& svc, const Listener& listener, std::filesystem::path vault, Limits limits);
  ~Agent();

  void record_start();
  // Serves until stopped; returns why it stopped. Every connection is closed when it returns.
  std::string serve();
  // agent.stop, unless the vault is no longer the one opened (a record there would move the
  // token anchor away from the live log).
  void record_stop(const std::string& reason) noexcept;
  // After `agent stop`, with the socket removed: tells the client, which can start another at
  // once.
  void stopped();

 private:
  struct Connection;
  static constexpr std::string_view kVaultGone = "vault replaced";

  std::string resource();
  void serve_connection(Connection& c);
  // One request of a connection; false to close the connection.
  bool serve_request(Connection& c, wire::Reader& in);
  std::optional<wire::Writer> serve_file(Connection& c, std::uint16_t op, wire::Reader& in);
  // A message that is not a request of this version: an error reply, audited as a failed
  // agent.request.
  void refuse_message(Connection& c, const std::string& why, bool reply);
  void stop_with(std::string reason);
  nlohmann::json status_json();

  Service& svc_;
  std::mutex svc_mutex_;  // held while a request runs on svc_
  const Listener& listener_;
  std::filesystem::path vault_;
  std::optional<files::FileId> vault_id_;
  Limits limits_;
  Caller self_;
  std::string started_;
  std::atomic<std::int64_t> requests_{0};
  std::atomic<std::int64_t> last_activity_ns_{0};  // steady clock

  std::mutex mutex_;  // guards what follows
  std::list<std::unique_ptr<Connection>> connections_;
  std::optional<std::string> stop_reason_;
  std::vector<posix::Fd> stopped_by_;  // the connections of `agent stop`
  posix::Fd wake_read_, wake_write_;   // a byte wakes serve()
};

}  // namespace kms::agent
