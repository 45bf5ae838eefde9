#include "kms/service.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "grants/operations.hpp"
#include <fmt/format.h>

#include "audit/operations.hpp"
#include "files/operations.hpp"
#include "keys/operations.hpp"
#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/files.hpp"
#include "runner/runner.hpp"
#include "secrets/operations.hpp"
#include "vault/operations.hpp"
#include "vault/vault.hpp"

namespace kms {
namespace {

// The length of the audit log that `live` and `backup` share: their records agree up to that seq
// and differ (or one log ends) after it. The chain makes agreement at one seq imply it at every
// earlier one, so a binary search on the hashes finds it.
std::int64_t shared_log_length(store::Db& live, store::Db& backup) {
  std::int64_t lo = 0, hi = std::min(store::audit_count(live), store::audit_count(backup));
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo + 1) / 2;
    const auto a = store::audit_hash_at(live, mid);
    const auto b = store::audit_hash_at(backup, mid);
    if (a && b && *a == *b) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// What the live vault has and the backup lacks. A version of the same number made at another time
// is another version (the live one came after an earlier restore): it is lost too.
RestoreLosses compare_for_restore(store::Db& live, store::Db& backup) {
  const store::Tx snapshot(live, store::Tx::Kind::read);  // one view of the live vault
  RestoreLosses out;
  std::map<std::pair<std::string, std::int64_t>, std::string> kept;
  std::set<std::string> kept_ids;
  for (const store::KeyVersionRow& v : store::key_versions_all(backup)) {
    kept.emplace(std::pair(v.key_id, v.version), v.created);
    kept_ids.insert(v.key_id);
  }
  for (const store::KeyVersionRow& v : store::key_versions_all(live)) {
    const auto it = kept.find(std::pair(v.key_id, v.version));
    if (it != kept.end() && it->second == v.created) continue;
    out.key_versions.push_back({v.key_id, v.version, it != kept.end()});
    if (!kept_ids.contains(v.key_id) && (out.keys.empty() || out.keys.back() != v.key_id)) {
      out.keys.push_back(v.key_id);
    }
  }
  for (const auto& [alias, key_id] : store::alias_list(live)) {
    const std::string& id = key_id;  // clang 14: a lambda cannot capture a structured binding
    const bool named =
        std::any_of(out.key_versions.begin(), out.key_versions.end(),
                    [&](const RestoreLosses::KeyVersion& v) { return v.key_id == id; });
    if (named) out.aliases[key_id].push_back(alias);
  }

  std::map<std::string, std::string> names;  // live secret id -> name
  for (const store::SecretRow& s : store::secret_list(live)) names.emplace(s.id, s.name);
  std::set<std::string> kept_secrets;
  for (const store::SecretRow& s : store::secret_list(backup)) kept_secrets.insert(s.id);
  for (const auto& [id, name] : names) {
    if (!kept_secrets.contains(id)) out.secrets.push_back({id, name});
  }
  kept.clear();
  for (const store::SecretVersionRow& v : store::secret_versions_all(backup)) {
    kept.emplace(std::pair(v.secret_id, v.version), v.created);
  }
  for (const store::SecretVersionRow& v : store::secret_versions_all(live)) {
    const auto it = kept.find(std::pair(v.secret_id, v.version));
    if (it != kept.end() && it->second == v.created) continue;
    const auto name = names.find(v.secret_id);
    out.secret_versions.push_back({v.secret_id, name == names.end() ? std::string() : name->second,
                                   v.version, it != kept.end()});
  }

  const std::int64_t shared = shared_log_length(live, backup);
  const std::int64_t head = store::audit_count(live);
  if (head > shared) {
    out.records = head - shared;
    out.first_record = shared + 1;
    out.last_record = head;
  }
  return out;
}

std::string counted(std::size_t n, std::string_view what) {
  return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s");
}

// "1 key version (1 whole key), 2 secret versions and 3 audit records (seq 12 to 14)"
std::string summary(const RestoreLosses& l) {
  std::vector<std::string> parts;
  if (!l.key_versions.empty() || !l.keys.empty()) {
    parts.push_back(
        counted(l.key_versions.size(), "key version") +
        (l.keys.empty() ? "" : fmt::format(" ({})", counted(l.keys.size(), "whole key"))));
  }
  if (!l.secret_versions.empty() || !l.secrets.empty()) {
    parts.push_back(
        counted(l.secret_versions.size(), "secret version") +
        (l.secrets.empty() ? "" : fmt::format(" ({})", counted(l.secrets.size(), "whole secret"))));
  }
  if (l.records > 0) {
    parts.push_back(counted(static_cast<std::size_t>(l.records), "audit record") +
                    fmt::format(" (seq {} to {})", l.first_record, l.last_record));
  }
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += i + 1 == parts.size() ? " and " : ", ";
    out += parts[i];
  }
  return out;
}

// The version numbers a restore drops are never made again in the restored vault: a ciphertext,
// file or secret reference naming one then finds no such version ("restored from an older
// backup"), never another version of the same number.
void keep_lost_numbers(store::Db& db, const RestoreLosses& lost) {
  std::map<std::string, std::int64_t> keys, secrets;
  for (const RestoreLosses::KeyVersion& v : lost.key_versions) {
    keys[v.key_id] = std::max(keys[v.key_id], v.version);
  }
  for (const auto& [id, highest] : keys) {
    std::optional<store::KeyRow> k = store::key_get(db, id);
    if (!k || k->highest_lost_version >= highest) continue;  // a whole key lost: no numbers left
    k->highest_lost_version = highest;
    store::key_update(db, *k);
  }
  for (const RestoreLosses::SecretVersion& v : lost.secret_versions) {
    std::optional<store::SecretRow> s = store::secret_by_name(db, v.name);
    if (!s || s->id != v.secret_id || s->next_version > v.version) continue;
    s->next_version = v.version + 1;
    store::secret_update(db, *s);
  }
}

Error restore_refused(const std::filesystem::path& target, const std::filesystem::path& backup,
                      const RestoreLosses& losses) {
  if (!losses.live_altered.empty()) {
    return Error(Code::refused,
                 fmt::format("what restoring {} would drop from the vault at {} cannot be listed: "
                             "{}",
                             backup.string(), target.string(), losses.live_altered),
                 Remedy::keep_copy_then_force_restore, {},
                 "keep a copy of the vault file for investigation");
  }
  if (losses.empty()) {
    return Error(Code::refused, fmt::format("a vault exists at {}", target.string()),
                 Remedy::force_restore);
  }
  const char* consequence =
      !losses.key_versions.empty()      ? "ciphertexts and files made under these key versions "
                                          "will no longer decrypt"
      : !losses.secret_versions.empty() ? "these secret versions will be gone"
                                        : "these records will be gone from the audit log";
  return Error(Code::refused,
               fmt::format("restoring {} would drop what the vault at {} has and the backup "
                           "lacks: {}; {}",
                           backup.string(), target.string(), summary(losses), consequence),
               Remedy::back_up_then_force_restore);
}

}  // namespace

Service::Service(std::unique_ptr<Vault> vault)
    : vault_(std::move(vault)),
      runner_(std::make_unique<Runner>(*vault_)),
      keys_(std::make_unique<KeyOperations>(*runner_)),
      secrets_(std::make_unique<SecretOperations>(*runner_)),
      files_(std::make_unique<FileOperations>(*runner_)),
      vault_ops_(std::make_unique<VaultOperations>(*runner_)),
      audit_(std::make_unique<AuditOperations>(*runner_)),
      grants_(std::make_unique<GrantOperations>(*runner_)) {}

Service::~Service() = default;

std::unique_ptr<FileSession> Service::file_session(Action action, std::string name,
                                                   std::vector<std::string> key_refs) {
  return files_->session(action, std::move(name), std::move(key_refs));
}

void Service::serve_client(Caller who) { runner_->serve_client(std::move(who)); }

const Caller& Service::caller() const noexcept { return runner_->caller(); }

void Service::set_authorizer(Authorizer authorizer) {
  runner_->set_authorizer(std::move(authorizer));
}

std::unique_ptr<Service> Service::open(const std::filesystem::path& path, const SecureBytes& pin,
                                       bool allow_backup) {
  std::unique_ptr<Service> s(new Service(Vault::open(path, pin)));
  s->runner_->check_header_authenticated();
  if (!allow_backup && s->vault_->is_backup()) {
    throw Error(
        Code::refused,
        fmt::format("{} is a backup: writing to it would move the live vault's token anchor",
                    path.string()),
        Remedy::verify_backup_or_restore_it, path.string());
  }
  // A token file mended from its copy is told in the log, by the first process that saw it.
  for (const std::string& file : s->vault_->token_repairs()) {
    s->runner_->run({Action::vault_repair_token,
                     "vault/" + s->vault_->meta().vault_id,
                     {{"file", file}, {"restored_from", "copy"}}},
                    [](audit::Event&) {});
  }
  return s;
}

std::unique_ptr<Service> Service::init(const InitOptions& opts, const SecureBytes& pin,
                                       InitReport& report) {
  std::unique_ptr<Service> s(new Service(Vault::create(opts, pin, report)));
  Vault& v = *s->vault_;
  audit::Event ev{Action::vault_init, "vault/" + v.meta().vault_id, {}};
  ev.params["pkcs11_module"] = report.module;
  ev.params["token_label"] = report.token.label;
  ev.params["token_serial"] = report.token.serial;
  ev.params["private_token"] = report.so_pin.has_value();
  {
    store::Tx tx(v.db(), store::Tx::Kind::write);
    store::note_state_change(v.db());  // the first record holds the first state: no rows
    const store::AuditRow row = s->runner_->append(ev, "ok", "");
    tx.commit();
    s->runner_->log().publish(row);
  }
  v.publish();
  // The log and anchor hold a reference to the database, which publish() reopened.
  s->runner_->reopen_log();
  return s;
}

std::unique_ptr<Service> Service::reset_pin(const std::filesystem::path& path,
                                            const SecureBytes& so_pin, const SecureBytes& new_pin) {
  Vault::reset_user_pin(path, so_pin, new_pin);
  try {
    std::unique_ptr<Service> s = open(path, new_pin);
    s->runner_->run({Action::vault_reset_pin,
                     "vault/" + s->vault_->meta().vault_id,
                     {{"with", "security officer PIN"}}},
                    [](audit::Event&) {});
    return s;
  } catch (const Error& e) {
    throw Error(
        Code::failed,
        fmt::format("the user PIN was reset, but the reset could not be recorded: {}", e.what()),
        "the new PIN is in force; run `kmsctl audit verify`, and report the reset to "
        "whoever audits the vault");
  }
}

std::unique_ptr<Service> Service::restore_database(const std::string& location,
                                                   const SecureBytes& pin, bool force,
                                                   RestoreReport& report) {
  std::unique_ptr<Service> s(new Service(Vault::open(location, pin)));
  Vault& v = *s->vault_;
  audit::Log& log = s->runner_->log();
  const std::string shown = v.final_path().string();
  store::AuditRow row;
  {
    const WriterLock lock(v);
    const audit::VerifyReport rep = log.verify(/*check_anchor=*/false);
    if (!rep.ok) {
      throw Error(
          Code::integrity,
          fmt::format("the audit log in {} does not verify{}: {}", shown,
                      rep.first_bad_seq ? fmt::format(" at seq {}", *rep.first_bad_seq) : "",
                      rep.problem),
          "put another copy of the database back, then run `kmsctl vault restore` again");
    }
    report.backup_records = rep.records;
    const std::optional<audit::Anchor> old = log.read_anchor();
    const std::optional<Bytes> at_anchor =
        old ? store::audit_hash_at(v.db(), old->seq) : std::nullopt;
    if (old && at_anchor && crypto::equal(*at_anchor, old->hash)) {
      throw Error(Code::usage,
                  fmt::format("the vault's database {} agrees with its token anchor (seq {}): "
                              "there is nothing to restore",
                              shown, old->seq),
                  "`kmsctl vault restore` without a file accepts a database put back from an "
                  "older copy");
    }
    const std::int64_t head = rep.head ? rep.head->seq : 0;
    if (old && old->seq > head) {
      report.losses.records = old->seq - head;
      report.losses.first_record = head + 1;
      report.losses.last_record = old->seq;
    }
    if (!force) {
      throw Error(
          Code::refused,
          report.losses.records > 0
              ? fmt::format("the vault's database {} ends at seq {}, before its token anchor "
                            "(seq {}): accepting it drops records {} to {} and what they did "
                            "(keys, versions and secrets made after the copy)",
                            shown, head, old->seq, head + 1, old->seq)
              : fmt::format("the vault's database {} does not hold the record its token anchor "
                            "names: accepting it replaces the anchor",
                            shown),
          "keep what you can of the newer database for investigation; then pass --force to "
          "accept this one");
    }
    if (old) report.replaced_anchor_seq = old->seq;
    audit::Event ev{Action::vault_restore, "vault/" + v.meta().vault_id, {{"database", shown}}};
    ev.params["replaced_anchor_seq"] = old ? nlohmann::json(old->seq) : nlohmann::json();
    ev.params["replaced_anchor_hash"] =
        old ? nlohmann::json(crypto::to_hex(old->hash)) : nlohmann::json();
    ev.params["dropped_records"] = report.losses.records;
    store::Tx tx(v.db(), store::Tx::Kind::write);
    row = s->runner_->append(ev, "ok", "");
    tx.commit();
  }
  // Killed before this, the next command finishes it (audit::Log::finish_interrupted_restore).
  log.republish(row);
  return s;
}

std::unique_ptr<Service> Service::restore(const std::filesystem::path& target,
                                          const std::filesystem::path& backup,
                                          const SecureBytes& pin, bool force, RestoreReport& report,
                                          const ConfirmLosses& confirm) {
  if (store::is_postgres_location(target.string())) {
    throw Error(Code::usage,
                "`kmsctl vault restore FILE` puts a backup file in place of a vault file; the "
                "vault is in PostgreSQL",
                "put the database back with PostgreSQL's own tools (pg_restore, a base backup), "
                "then run `kmsctl vault restore` without a file to accept it");
  }
  std::string vault_id;
  std::error_code ec;
  const bool exists = std::filesystem::exists(target, ec);
  std::optional<files::ExclusiveLock> lock;
  {
    Service from(Vault::open(backup, pin));
    if (!from.vault_->is_backup()) {
      throw Error(Code::usage,
                  fmt::format("{} is not a backup made by `kmsctl vault backup`", backup.string()),
                  "pass a backup file");
    }
    const audit::VerifyReport rep = from.runner_->log().verify(/*check_anchor=*/false);
    if (!rep.ok) {
      throw Error(
          Code::integrity,
          fmt::format("the backup {} does not verify{}: {}", backup.string(),
                      rep.first_bad_seq ? fmt::format(" at seq {}", *rep.first_bad_seq) : "",
                      rep.problem),
          "choose another backup");
    }
    report.backup_records = rep.records;
    vault_id = from.vault_->meta().vault_id;
    // A backup made by an older kmsctl: its rows have no MAC (its verified log holds no state).
    from.vault_->db().set_legacy_rows(rep.state_recorded_at == 0);
    lock.emplace(lock_path(target));
    if (exists) {
      store::Db live(target, store::Db::Mode::open_existing);
      const auto meta = store::read_meta(live);
      if (!meta || meta->vault_id != vault_id) {
        throw Error(Code::refused,
                    fmt::format("the backup belongs to vault {}, not to the vault at {}", vault_id,
                                target.string()),
                    Remedy::restore_to_other_path);
      }
      from.vault_->authenticate(live);
      try {
        report.losses = compare_for_restore(live, from.vault_->db());
      } catch (const Error& e) {
        if (e.code() != Code::integrity) throw;
        report.losses = {};
        report.losses.live_altered = e.what();  // a tampered vault is what a restore is for
      }
    }
  }
  // Decided under the writer lock: what is confirmed is what is dropped.
  if (exists && !force && (report.losses.empty() || !confirm || !confirm(report.losses))) {
    throw restore_refused(target, backup, report.losses);
  }
  // The restored content and its vault.restore record are made in a copy beside the vault,
  // which then replaces the vault's content in one SQLite transaction (or is renamed into
  // place): a kill leaves the old content or the new one with its record, never a live vault
  // marked as a backup or a restore without its record. Only the anchor moves afterwards; a
  // restore killed before that is finished by the next command (audit::Log::check_anchor).
  files::AtomicFile staged(target, /*overwrite=*/true, files::AtomicFile::Temp::named);
  store::AuditRow row;
  {
    store::Db src(backup, store::Db::Mode::open_existing);
    src.backup_to(staged.temp_path());
  }
  store::Db(staged.temp_path(), store::Db::Mode::open_existing)
      .set_application_id(store::kLiveVaultId);
  {
    Service s(Vault::open(staged.temp_path(), pin));
    std::optional<audit::Anchor> old = s.runner_->log().read_anchor();
    if (old) report.replaced_anchor_seq = old->seq;
    audit::Event ev{Action::vault_restore, "vault/" + vault_id, {{"backup", backup.string()}}};
    ev.params["replaced_anchor_seq"] = old ? nlohmann::json(old->seq) : nlohmann::json();
    ev.params["replaced_anchor_hash"] =
        old ? nlohmann::json(crypto::to_hex(old->hash)) : nlohmann::json();
    const RestoreLosses& lost = report.losses;
    ev.params["dropped_key_versions"] = lost.key_versions.size();
    ev.params["dropped_keys"] = lost.keys.size();
    ev.params["dropped_secret_versions"] = lost.secret_versions.size();
    ev.params["dropped_secrets"] = lost.secrets.size();
    ev.params["dropped_records"] = lost.records;
    store::Tx tx(s.vault_->db(), store::Tx::Kind::write);
    keep_lost_numbers(s.vault_->db(), lost);
    row = s.runner_->append(ev, "ok", "");
    tx.commit();
    s.vault_->db().checkpoint();  // the copy must hold everything: its WAL is not copied
  }
  if (exists) {
    store::Db(target, store::Db::Mode::open_existing).restore_from(staged.temp_path());
  } else {
    // A WAL left beside a vault file that is gone belongs to nothing: SQLite would replay it
    // over the restored file.
    for (const char* suffix : {"-wal", "-shm"})
      std::filesystem::remove(target.string() + suffix, ec);
    staged.commit();
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    std::filesystem::remove(staged.temp_path().string() + suffix, ec);
  }
  std::unique_ptr<Service> s(new Service(Vault::open(target, pin)));
  s->runner_->log().republish(
      row);  // the restored log may be shorter: every anchor slot moves to it
  return s;
}

}  // namespace kms
