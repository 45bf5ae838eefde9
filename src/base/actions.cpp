#include "kms/actions.hpp"

#include <array>

namespace kms {
namespace {

using A = Action;
constexpr std::array kActions{
    ActionInfo{A::vault_init, "vault.init", "a vault was created, with its root key in the token"},
    ActionInfo{A::vault_status, "vault.status", "the vault's status was read", "vault:Status"},
    ActionInfo{A::vault_backup, "vault.backup", "a backup of the vault was written",
               "vault:Backup"},
    ActionInfo{A::vault_restore, "vault.restore",
               "the vault was replaced by a backup (with what that dropped)", "vault:Restore"},
    ActionInfo{A::vault_rekey, "vault.rekey", "the root key was replaced by a new one",
               "vault:Rekey"},
    ActionInfo{A::vault_change_pin, "vault.change_pin",
               "the token's user PIN changed (steps start, then done)", "vault:ChangePin"},
    ActionInfo{A::vault_reset_pin, "vault.reset_pin",
               "the token's user PIN was set anew with the security officer PIN"},
    ActionInfo{A::vault_check_token, "vault.check_token",
               "the token's objects were checked (and strays or foreign ones removed)",
               "vault:CheckToken"},
    ActionInfo{A::vault_repair_token, "vault.repair_token",
               "a token file emptied by an interruption was mended from its copy"},
    ActionInfo{A::vault_upgrade, "vault.upgrade",
               "the rows of a vault made by an older kmsctl got their MACs", "vault:Upgrade"},
    ActionInfo{A::vault_maintain, "vault.maintain",
               "due key rotations, key deletions and secret purges ran", "vault:Maintain"},
    ActionInfo{A::audit_list, "audit.list", "audit records were listed", "audit:Query"},
    ActionInfo{A::audit_verify, "audit.verify", "the chain and the rows were verified",
               "audit:Verify"},
    ActionInfo{A::audit_export, "audit.export", "the log was exported as JSON Lines",
               "audit:Export"},
    ActionInfo{A::key_create, "key.create", "a key was created", "kms:CreateKey"},
    ActionInfo{A::key_list, "key.list", "keys were listed", "kms:ListKeys"},
    ActionInfo{A::key_describe, "key.describe", "a key was described", "kms:DescribeKey"},
    ActionInfo{A::key_enable, "key.enable", "a key was enabled", "kms:EnableKey"},
    ActionInfo{A::key_disable, "key.disable", "a key was disabled", "kms:DisableKey"},
    ActionInfo{A::key_rotate, "key.rotate", "a key got a new primary version", "kms:RotateKey"},
    ActionInfo{A::key_set_rotation, "key.set_rotation", "a key's rotation period changed",
               "kms:SetKeyRotation"},
    ActionInfo{A::key_schedule_deletion, "key.schedule_deletion",
               "a key was scheduled for deletion", "kms:ScheduleKeyDeletion"},
    ActionInfo{A::key_cancel_deletion, "key.cancel_deletion",
               "a key's scheduled deletion was cancelled", "kms:CancelKeyDeletion"},
    ActionInfo{A::key_alias_create, "key.alias_create", "an alias was created", "kms:CreateAlias"},
    ActionInfo{A::key_alias_update, "key.alias_update", "an alias was pointed at another key",
               "kms:UpdateAlias"},
    ActionInfo{A::key_alias_delete, "key.alias_delete", "an alias was deleted", "kms:DeleteAlias"},
    ActionInfo{A::key_alias_list, "key.alias_list", "aliases were listed", "kms:ListAliases"},
    ActionInfo{A::key_tag, "key.tag", "a key's tags were set", "kms:TagResource"},
    ActionInfo{A::key_untag, "key.untag", "tags were removed from a key", "kms:UntagResource"},
    ActionInfo{A::key_encrypt, "key.encrypt", "data was encrypted under a key", "kms:Encrypt"},
    ActionInfo{A::key_decrypt, "key.decrypt", "data was decrypted", "kms:Decrypt"},
    ActionInfo{A::key_reencrypt, "key.reencrypt",
               "a ciphertext was decrypted and encrypted again without releasing it",
               "kms:ReEncrypt"},
    ActionInfo{A::key_generate_data_key, "key.generate_data_key", "a data key was generated",
               "kms:GenerateDataKey"},
    ActionInfo{A::random_generate, "random.generate", "random bytes were generated",
               "kms:GenerateRandom"},
    ActionInfo{A::file_encrypt, "file.encrypt",
               "a file was encrypted (records started, then ok or error)", "kms:GenerateDataKey"},
    ActionInfo{A::file_decrypt, "file.decrypt",
               "a file was decrypted (records started, then ok or error)", "kms:Decrypt"},
    ActionInfo{A::file_rewrap, "file.rewrap", "a file's data key was wrapped again",
               "kms:ReEncrypt"},
    ActionInfo{A::secret_create, "secret.create", "a secret was created", "secrets:CreateSecret"},
    ActionInfo{A::secret_put, "secret.put", "a secret got a new version", "secrets:PutSecretValue"},
    ActionInfo{A::secret_get, "secret.get", "a secret's value was read", "secrets:GetSecretValue"},
    ActionInfo{A::secret_list, "secret.list", "secrets were listed", "secrets:ListSecrets"},
    ActionInfo{A::secret_describe, "secret.describe", "a secret was described",
               "secrets:DescribeSecret"},
    ActionInfo{A::secret_versions, "secret.versions", "a secret's versions were listed",
               "secrets:ListSecretVersionIds"},
    ActionInfo{A::secret_delete, "secret.delete",
               "a secret was deleted (scheduled, or purged with --force)", "secrets:DeleteSecret"},
    ActionInfo{A::secret_restore, "secret.restore", "a secret's scheduled deletion was cancelled",
               "secrets:RestoreSecret"},
    ActionInfo{A::secret_set_rotation, "secret.set_rotation",
               "a secret's rotation command or period changed", "secrets:SetSecretRotation"},
    ActionInfo{A::secret_rotate, "secret.rotate",
               "a step of a secret's rotation (create, set, test, finish) ran",
               "secrets:RotateSecret"},
    ActionInfo{A::agent_start, "agent.start", "an agent started serving the vault"},
    ActionInfo{A::agent_stop, "agent.stop", "an agent stopped (and why)"},
    ActionInfo{A::agent_connect, "agent.connect",
               "a process of another user reached an agent (older agents refused other users "
               "before reading a request)"},
    ActionInfo{A::agent_request, "agent.request", "a message an agent could not read as a request"},
    ActionInfo{A::grant_create, "grant.create", "a grant let a user use some operations on one key",
               "kms:CreateGrant"},
    ActionInfo{A::grant_list, "grant.list", "grants were listed", "kms:ListGrants"},
    ActionInfo{A::grant_revoke, "grant.revoke", "a grant was revoked", "kms:RevokeGrant"},
    ActionInfo{A::grant_retire, "grant.retire", "a grant was retired (its use is over)",
               "kms:RetireGrant"},
    ActionInfo{A::service_start, "service.start",
               "`kmsctl serve` started serving the vault (its sockets, its policy's SHA-256)"},
    ActionInfo{A::service_stop, "service.stop", "`kmsctl serve` stopped (and why)"},
    ActionInfo{A::service_reload, "service.reload",
               "the service loaded its policy file again (its SHA-256), or kept the old one"},
    ActionInfo{A::key_set_policy, "key.set_policy",
               "a key's own policy was set or removed (its SHA-256, its statements)",
               "kms:PutKeyPolicy"},
    ActionInfo{A::key_get_policy, "key.get_policy", "a key's own policy was read",
               "kms:GetKeyPolicy"},
    ActionInfo{A::key_get_public_key, "key.get_public_key", "a key's public key was read",
               "kms:GetPublicKey"},
    ActionInfo{A::key_sign, "key.sign", "a message or digest was signed (the algorithm)",
               "kms:Sign"},
    ActionInfo{A::key_verify, "key.verify",
               "a signature was verified with a key in the vault (whether it was valid)",
               "kms:Verify"},
    ActionInfo{A::key_mac, "key.mac", "a MAC was made", "kms:GenerateMac"},
    ActionInfo{A::key_verify_mac, "key.verify_mac", "a MAC was verified (whether it was valid)",
               "kms:VerifyMac"},
    ActionInfo{A::secret_set_policy, "secret.set_policy",
               "a secret's own policy was set or removed (its SHA-256, its statements)",
               "secrets:PutResourcePolicy"},
    ActionInfo{A::secret_get_policy, "secret.get_policy", "a secret's own policy was read",
               "secrets:GetResourcePolicy"},
    ActionInfo{A::key_get_parameters_for_import, "key.get_parameters_for_import",
               "a wrapping key and import token were made for a key of origin external (the "
               "wrapping algorithm, the expiry)",
               "kms:GetParametersForImport"},
    ActionInfo{A::key_import_key_material, "key.import_key_material",
               "key material was imported into a key of origin external (its expiry; whether "
               "imported again)",
               "kms:ImportKeyMaterial"},
    ActionInfo{A::vault_migrate, "vault.migrate",
               "the vault file was copied into a PostgreSQL database (which one, without its "
               "password), which carries on from this record",
               "vault:Migrate"},
};

constexpr bool in_enum_order() {
  for (std::size_t i = 0; i < kActions.size(); ++i) {
    if (static_cast<std::size_t>(kActions[i].action) != i) return false;
  }
  return true;
}
static_assert(in_enum_order(), "kActions must list every Action in the enum's order");
static_assert(static_cast<std::size_t>(Action::vault_migrate) + 1 == kActions.size(),
              "every Action needs its row in kActions");

}  // namespace

std::span<const ActionInfo> actions() noexcept { return kActions; }

std::string_view action_name(Action a) noexcept {
  return kActions[static_cast<std::size_t>(a)].name;
}

std::optional<Action> parse_action(std::string_view name) noexcept {
  for (const ActionInfo& i : kActions) {
    if (i.name == name) return i.action;
  }
  return std::nullopt;
}

std::string_view iam_name(Action a) noexcept { return kActions[static_cast<std::size_t>(a)].iam; }

std::vector<Action> iam_actions(std::string_view iam) {
  std::vector<Action> found;
  if (iam.empty()) return found;
  for (const ActionInfo& i : kActions) {
    if (i.iam == iam) found.push_back(i.action);
  }
  return found;
}

}  // namespace kms
