// The operations on the vault itself, each one audited transaction of the runner (Runner::run).
#include "vault/operations.hpp"

#include <fmt/format.h>

#include "kms/clock.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "runner/runner.hpp"

namespace kms {

VaultOperations::VaultOperations(Runner& runner) : runner_(runner), vault_(runner.vault()) {}

Status VaultOperations::status() {
  Status st;
  const store::VaultMeta& m = vault_.meta();
  runner_.run({Action::vault_status, "vault/" + m.vault_id, {}}, [&](audit::Event&) {
    st.vault_path = vault_.final_path().string();
    st.vault_id = m.vault_id;
    st.created = m.created;
    st.schema_version = vault_.db().schema_version();
    st.module = m.pkcs11_module;
    st.token = vault_.token_info();
    st.private_token = !m.softhsm_conf.empty();
    st.root_key_generation = m.root_key_gen;
    st.root_key_seal = vault_.master_seal_name();
    st.counts = store::vault_counts(vault_.db(), format_rfc3339(now()));
  });
  // The status record itself is the new head; seqs start at 1 and have no gaps.
  if (auto head = store::audit_last(vault_.db())) st.audit_head = *head;
  st.audit_records = st.audit_head.seq;
  return st;
}

void VaultOperations::backup(const std::filesystem::path& dest, bool overwrite) {
  if (vault_.db().dialect() == store::Dialect::postgresql) {
    throw Error(Code::usage,
                fmt::format("the vault {} is in PostgreSQL: `kmsctl vault backup` copies a vault "
                            "file",
                            vault_.final_path().string()),
                "back the database up with PostgreSQL's own tools (pg_dump, base backups)");
  }
  std::optional<files::AtomicFile> out;
  // The backup record is committed first so that the copy contains it and matches the anchor.
  runner_.run(
      {Action::vault_backup, "vault/" + vault_.meta().vault_id, {{"output", dest.string()}}},
      [&](audit::Event&) { out.emplace(dest, overwrite, files::AtomicFile::Temp::named); });
  vault_.db().backup_to(out->temp_path());
  {
    store::Db copy(out->temp_path(), store::Db::Mode::open_existing);
    copy.set_application_id(store::kBackupVaultId);
    copy.checkpoint();  // one self-contained file: the WAL is folded in and removed
  }
  out->commit();
}

MigrateReport VaultOperations::migrate(const std::string& to) {
  MigrateReport rep;
  rep.to = store::shown_location(to);
  if (vault_.db().dialect() != store::Dialect::sqlite || vault_.is_backup()) {
    throw Error(Code::usage, "`kmsctl vault migrate` moves a live vault file into PostgreSQL",
                "point --vault at the vault file");
  }
  if (!store::is_postgres_location(to)) {
    throw Error(Code::usage, "--to is no PostgreSQL connection string",
                "give a libpq URI (postgresql://user@host/dbname) or key=value words "
                "(host=... dbname=...)");
  }
  // The database is checked before anything is recorded: reachable, and holding no vault.
  store::Db dest(to, store::Db::Mode::create_new);
  runner_.run({Action::vault_migrate, "vault/" + vault_.meta().vault_id, {{"to", rep.to}}},
              [](audit::Event&) {});
  {
    // Nobody writes the file while it is copied (its newest record is the vault.migrate one, or
    // one a writer added since): the copy and the token anchor agree.
    const WriterLock lock(vault_);
    vault_.authenticate(dest);
    store::Tx read(vault_.db(), store::Tx::Kind::read);
    store::Tx write(dest, store::Tx::Kind::write);
    rep.rows = store::copy_rows(vault_.db(), dest);
    write.commit();
  }
  const audit::VerifyReport v = runner_.verify_copy(dest);
  if (!v.ok) {
    throw Error(Code::integrity,
                fmt::format("the copy in {} does not verify: {}", rep.to, v.problem),
                "report this; the vault file is unchanged but for its vault.migrate record, and "
                "the database's tables can be dropped");
  }
  rep.records = v.records;
  rep.rows_checked = v.rows;
  return rep;
}

std::int64_t VaultOperations::rekey() {
  std::int64_t gen = 0;
  runner_.run({Action::vault_rekey, "vault/" + vault_.meta().vault_id, {}},
              [&](audit::Event& ev) {
                gen = vault_.prepare_rekey();
                ev.params["root_key_generation"] = gen;
              },
              {[&] { vault_.finish_rekey(); }, [&] { vault_.abort_rekey(); }});
  return gen;
}

void VaultOperations::change_pin(const SecureBytes& old_pin, const SecureBytes& new_pin) {
  // The token cannot join the SQLite transaction. The change is recorded as started before the
  // token is asked (a change that cannot be recorded does not happen) and as done after it, so
  // an interruption in between leaves a start without its done, never a lone "ok".
  audit::Event ev{Action::vault_change_pin, "vault/" + vault_.meta().vault_id, {{"step", "start"}}};
  runner_.run(ev, [](audit::Event&) {});
  ev.params["step"] = "done";
  try {
    vault_.change_pin(old_pin, new_pin);
  } catch (const Error& e) {
    runner_.record_failure(ev, e.code());
    throw;
  }
  runner_.run(ev, [](audit::Event&) {});
}

}  // namespace kms
