#include "runner/runner.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <limits>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "kms/clock.hpp"
#include "kms/files.hpp"
#include "kms/signals.hpp"

namespace kms {
namespace fs = std::filesystem;
namespace {

// The audit anchor kept in the vault's token.
class TokenAnchor final : public audit::AnchorStore {
 public:
  explicit TokenAnchor(Vault& v) : vault_(v) {}
  std::vector<Bytes> load() override { return vault_.load_anchor(); }
  void store(ByteView value) override { vault_.store_anchor(value, audit::anchor_seq); }
  void replace(ByteView value) override { vault_.reset_anchor(value); }

 private:
  Vault& vault_;
};

std::string_view outcome_of(Code c) { return c == Code::refused ? "denied" : "error"; }
}  // namespace

Runner::Runner(Vault& vault)
    : vault_(vault),
      anchor_(std::make_unique<TokenAnchor>(vault_)),
      log_(std::make_unique<audit::Log>(vault_.db(), vault_.meta().vault_id, vault_.audit_key(),
                                        *anchor_)),
      caller_(Caller::current()),
      // A vault being created is not at its path yet: its owner is the one creating it. A vault
      // in PostgreSQL has no file: the database's roles decide who reaches it, and the owner is
      // whoever opens it.
      authorizer_(owner_only(vault_.db().dialect() == store::Dialect::postgresql
                                 ? caller_.uid
                                 : files::file_owner(vault_.final_path()).value_or(caller_.uid))) {}

Runner::~Runner() = default;

WriterLock::WriterLock(Vault& vault) : db_(vault.db()) {
  if (db_.dialect() == store::Dialect::postgresql) {
    db_.lock_writer();
  } else {
    file_.emplace(lock_path(vault.final_path()));
  }
}

WriterLock::~WriterLock() { db_.unlock_writer(); }

void Runner::reopen_log() {
  log_ = std::make_unique<audit::Log>(vault_.db(), vault_.meta().vault_id, vault_.audit_key(),
                                      *anchor_);
}

void Runner::check_header_authenticated() {
  if (!vault_.header_unauthenticated() || !log_->head_state().state) return;
  throw Error(Code::integrity,
              "the vault header was altered outside kmsctl: it has no MAC, in a vault whose rows "
              "are authenticated",
              Remedy::verify_then_restore_vault, {},
              "do not use this vault until you know who changed it");
}

void Runner::authenticate_rows() {
  store::Db& db = vault_.db();
  audit::Event ev{Action::vault_upgrade, "vault/" + vault_.meta().vault_id, {}};
  store::AuditRow row;
  {
    store::Tx tx(db, store::Tx::Kind::write);
    if (log_->head_state().state) return;  // another process did it meanwhile
    ev.params["schema_version"] = db.schema_version();
    ev.params["rows_authenticated"] = store::authenticate_rows(db);
    row = append(ev, "ok", "");
    tx.commit();
  }
  log_->publish(row);
}

void Runner::serve_client(Caller who) { caller_ = std::move(who); }

void Runner::set_authorizer(Authorizer authorizer) { authorizer_ = std::move(authorizer); }

void Runner::authorize(audit::Event& event) {
  const Decision d = authorizer_({caller_, event.action, event.resource, event.context});
  // The record names the rule that decided, unless it is the owner's own vault (every record of
  // a vault without a service is the owner's) or no rule (a service's own records); a grant's
  // id also on its own, for `audit list --grant`.
  if (d.allowed && (d.rule.empty() || d.rule == "owner")) return;
  event.params["rule"] = d.rule;
  if (d.rule.starts_with("grant:")) {
    event.params["grant_id"] = d.rule.substr(6);
  } else if (event.params.contains("grant_id")) {
    event.params.erase("grant_id");
  }
  if (d.allowed) return;
  throw Error(Code::refused,
              fmt::format("{} (uid {}) may not {} {}: {}", caller_.user, caller_.uid,
                          action_name(event.action), event.resource, d.reason),
              caller_.channel == Channel::service ? Remedy::ask_for_access : Remedy::act_as_owner);
}

store::AuditRow Runner::append(const audit::Event& event, std::string_view outcome,
                               std::string_view error_code) {
  if (caller_.channel == Channel::direct) {
    return log_->append(event, outcome, error_code, caller_, now());
  }
  audit::Event named = event;
  named.params["channel"] = channel_name(caller_.channel);
  // The serving process and its client ("agent": {...} or "service": {...}).
  named.params[std::string(channel_name(caller_.channel))] = {{"pid", ::getpid()},
                                                              {"client_pid", caller_.pid}};
  return log_->append(named, outcome, error_code, caller_, now());
}

void Runner::require_recorded_state(std::string_view before) {
  const audit::Log::HeadState head = log_->head_state();
  if (!head.state) return;  // not reached: check_writable() upgraded the vault
  const store::StateReport st = store::check_state(vault_.db(), *head.state, head.seq);
  if (st.ok) return;
  throw Error(Code::integrity, fmt::format("refusing to {}: {}", before, st.problem),
              Remedy::verify_then_restore_vault, {},
              "do not use this vault until you know who changed it");
}

void Runner::check_writable() {
  vault_.check_in_place();
  log_->check_anchor();
  // The first write by this kmsctl to a vault of an older one authenticates its rows first:
  // the newest record, checked, holds no state only in such a vault.
  if (!vault_.is_backup() && !log_->head_state().state) authenticate_rows();
}

store::AuditRow Runner::run(audit::Event event, const std::function<void(audit::Event&)>& op) {
  return run(std::move(event), op, Hooks{});
}

store::AuditRow Runner::run(audit::Event event, const std::function<void(audit::Event&)>& op,
                            const Hooks& hooks, std::string_view outcome,
                            std::string_view error_code) {
  const WriterLock lock(vault_);
  check_writable();
  close_dead_file_operations();
  store::AuditRow row;
  const audit::Event request = event;
  try {
    for (int attempt = 1;; ++attempt) {
      try {
        store::Tx tx(vault_.db(), store::Tx::Kind::write);
        authorize(event);
        op(event);
        row = append(event, outcome, error_code);
        if (hooks.appended) hooks.appended(row);
        tx.commit();
        break;
      } catch (const store::Conflict& c) {
        // Another writer won (PostgreSQL): nothing was done; the request runs again from the
        // start, after a pause that grows, unless it lost too often.
        if (attempt == kConflictAttempts) {
          throw Error(Code::unavailable,
                      fmt::format("{} (gave up after {} tries)", c.what(), attempt),
                      Remedy::retry_when_free);
        }
        if (hooks.rolled_back) hooks.rolled_back();
        event = request;
        conflict_pause(attempt);
      }
    }
  } catch (const Error& e) {
    if (hooks.rolled_back) hooks.rolled_back();
    if (hooks.failing) hooks.failing(event);
    record_failure(event, e.code(), failure_code(e));
    throw;
  } catch (const std::exception&) {
    if (hooks.rolled_back) hooks.rolled_back();
    if (hooks.failing) hooks.failing(event);
    record_failure(event, Code::failed);
    throw;
  }
  log_->publish(row);
  if (hooks.committed) hooks.committed();
  return row;
}

void Runner::conflict_pause(int attempt) {
  // 2, 4, 8, 16 ms on average, each between half and 1.5 times that: writers that lost together
  // do not meet again at the same instant.
  const unsigned ms = 1U << attempt;
  const unsigned jitter = std::random_device{}() % (ms + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms / 2 + jitter));
}

void Runner::run_failed(audit::Event event, Code code,
                        const std::function<void(audit::Event&)>& op) {
  const WriterLock lock(vault_);
  check_writable();
  close_dead_file_operations();
  store::AuditRow row;
  {
    store::Tx tx(vault_.db(), store::Tx::Kind::write);
    op(event);
    row = append(event, outcome_of(code), code_name(code));
    tx.commit();
  }
  log_->publish(row);
}

std::string_view Runner::failure_code(const Error& e) noexcept {
  return dynamic_cast<const signals::Interrupted*>(&e) != nullptr ? "interrupted"
                                                                  : code_name(e.code());
}

void Runner::record_failure(const audit::Event& event, Code code) noexcept {
  record_failure(event, code, code_name(code));
}

void Runner::record_failure(const audit::Event& event, Code code,
                            std::string_view error_code) noexcept {
  try {
    store::Tx tx(vault_.db(), store::Tx::Kind::write);
    const store::AuditRow row = append(event, outcome_of(code), error_code);
    tx.commit();
    log_->publish(row);
  } catch (...) {
    // The original error is what the user needs; this one (often the same cause) is dropped.
  }
}

audit::VerifyReport Runner::verify_copy(store::Db& copy) {
  vault_.authenticate(copy);
  audit::Log log(copy, vault_.meta().vault_id, vault_.audit_key(), *anchor_);
  return log.verify();
}

fs::path Runner::ops_dir() const {
  if (vault_.db().dialect() == store::Dialect::sqlite) {
    return fs::path(vault_.final_path().string() + ".ops");
  }
  // A vault in PostgreSQL has no directory of its own: this user's on this host (made by the
  // first file operation). A file operation whose process died is ended by the next command on
  // the same host.
  return default_vault_path().parent_path() / (vault_.meta().vault_id + ".ops");
}

void Runner::close_dead_file_operations() {
  const fs::path dir = ops_dir();
  std::error_code ec;
  if (fs::symlink_status(dir, ec).type() != fs::file_type::directory) return;  // none ever ran
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    std::int64_t seq = 0;
    const auto [end, err] = std::from_chars(file.data(), file.data() + file.size(), seq);
    if (err != std::errc() || seq <= 0 || std::string_view(end) != ".lock") continue;
    const int fd = ::open(entry.path().c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) continue;  // its process runs it still
    // Its process is gone. The record it names is a start without its end when the process died
    // in the middle; otherwise the process died between its end record and the removal of this
    // file, or before its start committed, and there is nothing to record.
    store::Db& db = vault_.db();
    store::AuditFilter at;
    at.after_seq = seq - 1;
    at.limit = 1;
    at.newest_first = false;
    std::optional<store::AuditRow> start;
    store::audit_query(db, at, [&](const store::AuditRow& r) {
      if (r.seq == seq) start = r;
    });
    const std::optional<Action> action = start ? parse_action(start->action) : std::nullopt;
    bool ended = !action || start->outcome != "started";
    if (!ended) {
      store::AuditFilter later;
      later.resource = start->resource;
      later.after_seq = seq;
      later.limit = std::numeric_limits<std::int64_t>::max();
      later.newest_first = false;
      store::audit_query(db, later, [&](const store::AuditRow& r) {
        if (ended) return;
        const nlohmann::json p = nlohmann::json::parse(r.params, nullptr, false);
        ended = p.is_object() && p.value("started_seq", nlohmann::json()) == nlohmann::json(seq);
      });
    }
    if (!ended) {
      const nlohmann::json p = nlohmann::json::parse(start->params, nullptr, false);
      audit::Event ev{
          *action,
          start->resource,
          {{"file", p.is_object() ? p.value("file", nlohmann::json()) : nlohmann::json()},
           {"step", "end"},
           {"started_seq", seq},
           {"closed_by", "next command"}}};
      store::Tx tx(db, store::Tx::Kind::write);
      const store::AuditRow row = append(ev, "error", "interrupted");
      tx.commit();
      log_->publish(row);
    }
    ::unlink(entry.path().c_str());
  }
}

}  // namespace kms
