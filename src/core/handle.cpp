// kms::handle for each request: the request's fields handed to the Service operation that
// authorises, does and audits it. FileWrap, FileUnwrap, FileRewrap and FileEnd belong to a
// FileSession, not to a single call: the agent's server keeps one per connection
// (src/agent/server.cpp).
#include "grants/operations.hpp"
#include <fmt/format.h>

#include "audit/operations.hpp"
#include "files/operations.hpp"
#include "keys/operations.hpp"
#include "kms/error.hpp"
#include "kms/requests.hpp"
#include "kms/signals.hpp"
#include "secrets/operations.hpp"
#include "vault/operations.hpp"

namespace kms {

template <>
Status handle(Service& s, const req::Status&) {
  return s.vault_ops().status();
}

template <>
std::vector<AuditRecord> handle(Service& s, const req::AuditList& r) {
  return s.audit().list(r.filter);
}
template <>
audit::VerifyReport handle(Service& s, const req::AuditVerify&) {
  return s.audit().verify();
}
template <>
std::int64_t handle(Service& s, const req::AuditExport& r) {
  const std::filesystem::path dest(r.dest);
  if (!dest.is_absolute()) {
    throw Error(Code::usage, fmt::format("the export path {} is not absolute", r.dest));
  }
  return s.audit().export_to(dest, r.overwrite);
}

template <>
keys::KeyInfo handle(Service& s, const req::KeyCreate& r) {
  return s.keys().create(r.spec);
}
template <>
KeyPage handle(Service& s, const req::KeyList& r) {
  return s.keys().list(r.state, r.after, r.limit);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyDescribe& r) {
  return s.keys().describe(r.key);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyEnable& r) {
  return s.keys().enable(r.key);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyDisable& r) {
  return s.keys().disable(r.key);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyRotate& r) {
  return s.keys().rotate(r.key);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyCancelDeletion& r) {
  return s.keys().cancel_deletion(r.key);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeySetRotation& r) {
  return s.keys().set_rotation(r.key, r.days);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyScheduleDeletion& r) {
  return s.keys().schedule_deletion(r.key, r.pending_days);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyTag& r) {
  return s.keys().tag(r.key, r.tags);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyUntag& r) {
  return s.keys().untag(r.key, r.names);
}
template <>
Done handle(Service& s, const req::AliasCreate& r) {
  s.keys().alias_create(r.alias, r.key);
  return {};
}
template <>
Done handle(Service& s, const req::AliasUpdate& r) {
  s.keys().alias_update(r.alias, r.key);
  return {};
}
template <>
Done handle(Service& s, const req::AliasDelete& r) {
  s.keys().alias_delete(r.alias);
  return {};
}
template <>
std::vector<std::pair<std::string, std::string>> handle(Service& s, const req::AliasList&) {
  return s.keys().alias_list();
}

template <>
Bytes handle(Service& s, const req::Encrypt& r) {
  return s.keys().encrypt(r.key, r.plaintext.view(), r.context, r.algorithm);
}
template <>
keys::Decrypted handle(Service& s, const req::Decrypt& r) {
  if (r.algorithm == EncryptionAlgorithm::symmetric_default) {
    return s.keys().decrypt(r.blob, r.context);
  }
  return s.keys().decrypt_with(r.key, r.algorithm, r.blob, r.key_version);
}
template <>
Bytes handle(Service& s, const req::ReEncrypt& r) {
  return s.keys().reencrypt(r.blob, r.context, r.to_key, r.to_context);
}
template <>
DataKey handle(Service& s, const req::GenerateDataKey& r) {
  return s.keys().generate_data_key(r.key, r.bytes, r.context);
}
template <>
Bytes handle(Service& s, const req::Random& r) {
  return s.keys().random(r.bytes);
}
template <>
keys::ImportParams handle(Service& s, const req::KeyImportParams& r) {
  return s.keys().import_params(r.key, r.wrapping_algorithm);
}
template <>
keys::KeyInfo handle(Service& s, const req::KeyImport& r) {
  return s.keys().import_material(r.key, r.wrapped_material, r.import_token, r.expires);
}
template <>
keys::PublicKey handle(Service& s, const req::GetPublicKey& r) {
  return s.keys().get_public_key(r.key, r.key_version);
}
template <>
keys::Signature handle(Service& s, const req::Sign& r) {
  return s.keys().sign(r.key, r.algorithm, r.input.view(), r.is_digest);
}
template <>
keys::Verified handle(Service& s, const req::Verify& r) {
  return s.keys().verify(r.key, r.algorithm, r.input.view(), r.is_digest, r.signature,
                         r.key_version);
}
template <>
keys::Signature handle(Service& s, const req::Mac& r) {
  return s.keys().mac(r.key, r.message.view());
}
template <>
keys::Verified handle(Service& s, const req::VerifyMac& r) {
  return s.keys().verify_mac(r.key, r.message.view(), r.mac);
}

template <>
Done handle(Service& s, const req::FileFailed& r) {
  if (r.action != Action::file_encrypt && r.action != Action::file_decrypt &&
      r.action != Action::file_rewrap) {
    throw Error(Code::usage, "a file failure names a file action");
  }
  if (r.signal != 0) {
    s.files().failed(r.action, r.name, signals::Interrupted(r.signal));
  } else {
    s.files().failed(r.action, r.name, Error(r.code, "failed before any key was used"));
  }
  return {};
}

template <>
secrets::SecretInfo handle(Service& s, const req::SecretCreate& r) {
  return s.secrets().create(r.spec, r.input);
}
template <>
secrets::SecretInfo handle(Service& s, const req::SecretPut& r) {
  return s.secrets().put(r.name, r.input);
}
template <>
secrets::Value handle(Service& s, const req::SecretGet& r) {
  return s.secrets().get(r.name, r.stage, r.version, r.exec);
}
template <>
std::vector<secrets::SecretInfo> handle(Service& s, const req::SecretList&) {
  return s.secrets().list();
}
template <>
secrets::SecretInfo handle(Service& s, const req::SecretDescribe& r) {
  return s.secrets().describe(r.name);
}
template <>
secrets::SecretInfo handle(Service& s, const req::SecretVersions& r) {
  return s.secrets().versions(r.name);
}
template <>
secrets::SecretInfo handle(Service& s, const req::SecretRestore& r) {
  return s.secrets().restore(r.name);
}
template <>
secrets::SecretInfo handle(Service& s, const req::SecretDelete& r) {
  return s.secrets().remove(r.name, r.days);
}
template <>
secrets::SecretInfo handle(Service& s, const req::SecretSetRotation& r) {
  return s.secrets().set_rotation(r.name, r.change);
}

template <>
KeyPolicyInfo handle(Service& s, const req::KeySetPolicy& r) {
  return s.keys().set_policy(r.key, r.text);
}
template <>
KeyPolicyInfo handle(Service& s, const req::KeyGetPolicy& r) {
  return s.keys().get_policy(r.key);
}

template <>
SecretPolicyInfo handle(Service& s, const req::SecretSetPolicy& r) {
  return s.secrets().set_policy(r.name, r.text);
}
template <>
SecretPolicyInfo handle(Service& s, const req::SecretGetPolicy& r) {
  return s.secrets().get_policy(r.name);
}

template <>
GrantInfo handle(Service& s, const req::GrantCreate& r) {
  return s.grants().create(r.spec);
}
template <>
GrantPage handle(Service& s, const req::GrantList& r) {
  return s.grants().list(r.filter);
}
template <>
GrantInfo handle(Service& s, const req::GrantRevoke& r) {
  return s.grants().revoke(r.grant);
}
template <>
GrantInfo handle(Service& s, const req::GrantRetire& r) {
  return s.grants().retire(r.grant);
}

template <>
SecretRotation handle(Service& s, const req::SecretRotate& r) {
  return s.secrets().rotate(r.name);
}
template <>
MaintainReport handle(Service& s, const req::Maintain& r) {
  return s.maintain(r.dry_run);
}
template <>
Done handle(Service& s, const req::VaultBackup& r) {
  s.vault_ops().backup(r.dest, r.overwrite);
  return {};
}
template <>
MigrateReport handle(Service& s, const req::VaultMigrate& r) {
  return s.vault_ops().migrate(r.to);
}
template <>
std::int64_t handle(Service& s, const req::VaultRekey&) {
  return s.vault_ops().rekey();
}
template <>
TokenCheck handle(Service& s, const req::VaultCheckToken& r) {
  return s.vault_ops().check_token(r.remove);
}
template <>
Done handle(Service& s, const req::VaultChangePin& r) {
  s.vault_ops().change_pin(r.old_pin, r.new_pin);
  return {};
}

}  // namespace kms
