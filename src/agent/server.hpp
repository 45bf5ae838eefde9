// The serving side of the socket: the Listener (a socket in a directory of this user's alone)
// and the Agent that accepts connections on it and serves their requests on the vault it keeps
// open, each authorised for the connection's caller (docs/FORMAT.md §13). The same Agent serves
// `kmsctl agent` (its own user, until idle) and `kmsctl serve` (several users, by policy).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
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

// SIGTERM and SIGINT end Agent::serve (without SA_RESTART: poll returns at once); SIGHUP ends it
// too, or, for a service (hup_reloads), makes it load its policy again.
void catch_stop_signals(bool hup_reloads = false);

// The listening socket: in a fresh 0700 directory (or at --socket, in a directory only this
// user can write); removed, with that directory, when the agent ends.
class Listener {
 public:
  // `mode`: the socket's permissions (an agent's: 0600; a service's: whom the system lets
  // connect, before its policy decides).
  explicit Listener(const std::string& socket_flag, mode_t mode = 0600);
  // A socket made and bound by another (systemd's socket activation): neither it nor its
  // directory is removed at close.
  Listener(posix::Fd fd, std::filesystem::path path) : fd_(std::move(fd)), path_(std::move(path)) {
    owned_ = false;
  }
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
  bool owned_ = true;          // the socket file is ours to remove
};

// What a socket lets its callers ask: everything (full), or only the cryptographic use of keys
// and secret values (use_only: a socket safe to forward to a build host, as gpg-agent's extra
// socket).
enum class Reach : std::uint8_t { full, use_only };
std::string_view reach_name(Reach r) noexcept;
// Whether a socket of `reach` serves the operation `op` (a kms::Op or the agent's own).
bool reaches(Reach reach, std::uint16_t op) noexcept;

struct Endpoint {
  const Listener* listener = nullptr;
  Reach reach = Reach::full;
};

// How an Agent serves. An agent: its own user's requests, others refused, until idle or out of
// lifetime. A service: any user's, each decided by the Service's authoriser (its policy), until
// stopped; its own user (and root) administers it: status, reload.
struct Mode {
  bool service = false;
  Limits limits{};  // an agent's
  // A service's policy loaded again: what it loaded (for the record and the reply), or an
  // Error, the old policy kept.
  std::function<nlohmann::json()> reload;
  // A service's policy as it is now (start record, status).
  std::function<nlohmann::json()> describe;
};

// Serves requests (docs/FORMAT.md §13) on the vault it keeps open: one thread per connection
// reads its client's requests, so that a client that sends slowly holds no one else; each
// request then runs under one lock on the vault, in the order they take it, which is the
// order of their audit records; the reply is written after the lock is released.
class Agent {
 public:
  Agent(Service& svc, std::vector<Endpoint> endpoints, std::filesystem::path vault, Mode mode);
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
  // What `agent status` and `serve status` print: its pid, sockets, vault, requests, and its
  // limits (an agent) or policy (a service).
  nlohmann::json status_json();

 private:
  struct Connection;
  static constexpr std::string_view kVaultGone = "vault replaced";

  std::string resource();
  // Hands an accepted connection to an idle worker thread, or to a new one.
  void hand_off(Connection& c);
  void work();  // a worker: serves one connection after another until the agent stops
  void stop_workers();
  void serve_connection(Connection& c);
  // One request of a connection; false to close the connection.
  bool serve_request(Connection& c, wire::Reader& in);
  std::optional<wire::Writer> serve_file(Connection& c, std::uint16_t op, wire::Reader& in);
  // A message that is not a request of this version: an error reply, audited as a failed
  // agent.request.
  void refuse_message(Connection& c, const std::string& why, bool reply);
  // A request this connection may not send (an operation beyond its socket's reach, a control
  // request of someone who does not administer the agent): an error reply, audited as a denied
  // agent.request naming the rule.
  bool refuse_request(Connection& c, std::uint16_t op, const std::string& rule, const Error& e);
  // The policy loaded again (SIGHUP, `serve reload`), audited either way, for `who`.
  nlohmann::json reload(const Caller& who);
  bool administers(const Caller& c) const noexcept {
    return c.uid == self_.uid || (mode_.service && c.uid == 0);
  }
  void stop_with(std::string reason);
  nlohmann::json sockets_json() const;

  Service& svc_;
  std::mutex svc_mutex_;  // held while a request runs on svc_
  std::vector<Endpoint> endpoints_;
  std::filesystem::path vault_;  // a file, or a PostgreSQL connection string
  // A vault in PostgreSQL is known by its connection string without passwords, which its
  // clients send; a vault file, by its device and inode.
  bool in_database_;
  std::string database_;     // the connection string without passwords
  std::string shown_vault_;  // as status shows it
  std::optional<files::FileId> vault_id_;
  Mode mode_;
  Caller self_;
  std::string started_;
  std::atomic<std::int64_t> requests_{0};
  std::atomic<std::int64_t> last_activity_ns_{0};  // steady clock

  std::mutex mutex_;  // guards what follows
  std::list<std::unique_ptr<Connection>> connections_;
  // Worker threads, kept between connections: a thread made for each one cost a served request
  // a tenth of its time (its creation, and its stack faulted in again). At most one per
  // connection open at once; they end when the agent stops.
  std::vector<std::thread> workers_;
  std::deque<Connection*> pending_;  // accepted, no worker yet
  std::size_t idle_ = 0;             // workers waiting for a connection
  bool workers_stop_ = false;
  std::condition_variable work_;
  std::optional<std::string> stop_reason_;
  std::vector<posix::Fd> stopped_by_;  // the connections of `agent stop`
  posix::Fd wake_read_, wake_write_;   // a byte wakes serve()
};

}  // namespace kms::agent
