// `maintain`: the scheduled work of every domain in one command: keys whose rotation period has
// elapsed are rotated and keys past their deletion date deleted, in one audited transaction;
// secrets past their recovery window are purged in it too, and due secret rotations run after it.
#include "keys/key_store.hpp"
#include "kms/clock.hpp"
#include "kms/service.hpp"
#include "runner/runner.hpp"
#include "secrets/operations.hpp"
#include "secrets/secret_store.hpp"
#include "vault/vault.hpp"

namespace kms {
namespace {

// maintain's secret half: purges (inside maintain's transaction) and rotations (after it).
void maintain_secrets(Vault& vault, MaintainReport& rep, const std::string& at, audit::Event& ev) {
  for (const store::SecretRow& s : store::secrets_due_deletion(vault.db(), at)) {
    rep.secrets_purged.push_back(s.name);
    if (!rep.dry_run) store::secret_delete(vault.db(), s.id);
  }
  ev.params["secrets_purged"] = rep.secrets_purged;
  nlohmann::json due = nlohmann::json::array();
  for (const store::SecretRow& s : store::secrets_due_rotation(vault.db(), at)) {
    due.push_back(s.name);
    if (rep.dry_run) {
      // A rotation left pending is resumed, not started over: it would finish that version.
      const auto pending = store::secret_version_at_stage(vault.db(), s.id, SecretStage::pending);
      rep.secrets_rotated.emplace_back(s.name, pending ? pending->version : s.next_version);
    }
  }
  ev.params["secrets_due_rotation"] = due;
}

void rotate_due_secrets(Vault& vault, SecretOperations& ops, MaintainReport& rep) {
  if (rep.dry_run) return;
  std::vector<std::string> names;
  {
    store::Tx tx(vault.db(), store::Tx::Kind::read);
    for (const auto& s : store::secrets_due_rotation(vault.db(), format_rfc3339(now()))) {
      names.push_back(s.name);
    }
  }
  // Each rotation is audited step by step; one failing does not stop the others.
  for (const std::string& name : names) {
    try {
      const SecretRotation r = ops.rotate(name);
      rep.secrets_rotated.emplace_back(name, r.version);
    } catch (const Error& e) {
      rep.secrets_failed.emplace_back(name, e.what());
    }
  }
}

}  // namespace

MaintainReport Service::maintain(bool dry_run) {
  MaintainReport rep;
  rep.dry_run = dry_run;
  keys::KeyStore ks(*vault_);
  std::vector<std::string> token_keys_to_destroy;
  runner_->run(
      {Action::vault_maintain, "vault/" + vault_->meta().vault_id, {{"dry_run", dry_run}}},
      [&](audit::Event& ev) {
        const TimePoint t = now();
        const std::string at = format_rfc3339(t);
        // Nothing is destroyed for good on rows that are not the state the log recorded (a
        // deletion date replayed from an older copy of a key, say): checked before any change.
        if (!dry_run && (!store::keys_due_deletion(vault_->db(), at).empty() ||
                         !store::keys_due_material_expiry(vault_->db(), at).empty() ||
                         !store::secrets_due_deletion(vault_->db(), at).empty())) {
          runner_->require_recorded_state("delete keys or secrets that are due");
        }
        for (store::KeyRow& key : store::keys_due_rotation(vault_->db(), at)) {
          rep.rotated.emplace_back(key.id, dry_run ? key.primary_version + 1 : ks.rotate(key, t));
        }
        for (const store::KeyRow& key : store::keys_due_deletion(vault_->db(), at)) {
          rep.deleted.push_back(key.id);
          if (!dry_run) {
            const auto labels = ks.erase(key);
            token_keys_to_destroy.insert(token_keys_to_destroy.end(), labels.begin(), labels.end());
          }
        }
        // Imported material past its expiry is deleted (the key waits for the same material
        // again); so are import parameters that expired or served.
        for (store::KeyRow& key : store::keys_due_material_expiry(vault_->db(), at)) {
          rep.material_expired.emplace_back(key.id, key.material_expires.value_or(""));
          if (!dry_run) ks.expire_material(key);
        }
        if (!dry_run) rep.import_params_purged = store::import_params_purge(vault_->db(), at);
        for (const auto& [id, expiry] : rep.material_expired) {
          ev.params["material_expired"].push_back({{"key_id", id}, {"expired", expiry}});
        }
        if (rep.import_params_purged > 0) {
          ev.params["import_params_purged"] = rep.import_params_purged;
        }
        for (const auto& [id, version] : rep.rotated) {
          ev.params["rotated"].push_back({{"key_id", id}, {"version", version}});
        }
        ev.params["deleted"] = rep.deleted;
        maintain_secrets(*vault_, rep, at, ev);
      },
      {[&] { ks.destroy_token_keys(token_keys_to_destroy); },
       [&] { ks.destroy_token_keys(ks.created_token_keys()); }});
  rotate_due_secrets(*vault_, *secrets_, rep);
  return rep;
}

}  // namespace kms
