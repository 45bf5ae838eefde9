// Every operation a vault records: its action, with the one name it has in audit records, the
// docs and (in the service mode) policies. The table in src/base/actions.cpp also gives the man
// page its AUDIT ACTIONS section.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace kms {

enum class Action : std::uint8_t {
  vault_init,
  vault_status,
  vault_backup,
  vault_restore,
  vault_rekey,
  vault_change_pin,
  vault_reset_pin,
  vault_check_token,
  vault_repair_token,
  vault_upgrade,
  vault_maintain,
  audit_list,
  audit_verify,
  audit_export,
  key_create,
  key_list,
  key_describe,
  key_enable,
  key_disable,
  key_rotate,
  key_set_rotation,
  key_schedule_deletion,
  key_cancel_deletion,
  key_alias_create,
  key_alias_update,
  key_alias_delete,
  key_alias_list,
  key_tag,
  key_untag,
  key_encrypt,
  key_decrypt,
  key_reencrypt,
  key_generate_data_key,
  random_generate,
  file_encrypt,
  file_decrypt,
  file_rewrap,
  secret_create,
  secret_put,
  secret_get,
  secret_list,
  secret_describe,
  secret_versions,
  secret_delete,
  secret_restore,
  secret_set_rotation,
  secret_rotate,
  agent_start,
  agent_stop,
  agent_connect,
  agent_request,
  grant_create,
  grant_list,
  grant_revoke,
  grant_retire,
  service_start,
  service_stop,
  service_reload,
  key_set_policy,
  key_get_policy,
  key_get_public_key,
  key_sign,
  key_verify,
  key_mac,
  key_verify_mac,
  secret_set_policy,
  secret_get_policy,
  key_get_parameters_for_import,
  key_import_key_material,
  vault_migrate,
};

struct ActionInfo {
  Action action;
  std::string_view name;     // "key.create": as records, filters and docs spell it
  std::string_view summary;  // one line for the docs
  // Its name in policies, IAM-style ("kms:Decrypt"), empty for an action no caller can request
  // (an agent's own records, a token repaired at open). Several actions may share one: a file's
  // data key is wrapped, unwrapped and rewrapped as GenerateDataKey, Decrypt and ReEncrypt do.
  std::string_view iam = {};
};

// Every action, in the enum's order.
std::span<const ActionInfo> actions() noexcept;
std::string_view action_name(Action a) noexcept;
std::optional<Action> parse_action(std::string_view name) noexcept;
// The policy name of an action ("" for one no caller can request), and every action of a
// policy name, in the enum's order (none for an unknown or empty name).
std::string_view iam_name(Action a) noexcept;
std::vector<Action> iam_actions(std::string_view iam);

}  // namespace kms
