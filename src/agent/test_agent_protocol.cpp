// Unit tests of the agent's messages (src/core/wire.hpp, src/core/fields.hpp,
// src/agent/protocol.hpp; docs/FORMAT.md §13): every request and response type encodes and
// parses back to the same value, and anything else is refused.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "agent/protocol.hpp"
#include "core/fields.hpp"
#include "kms/requests.hpp"

using namespace kms;
using namespace kms::agent;
using namespace std::literals;

namespace {

// ---- equality, member by member, independent of the field lists under test ----
//
// A member that the field list left out comes back with its default value, and each sample
// below sets every member to something else: the comparison then fails.

template <class T>
bool eq(const T& a, const T& b);
bool eq(const SecureBytes& a, const SecureBytes& b);
template <class T>
bool eq(const std::optional<T>& a, const std::optional<T>& b);
template <class T>
bool eq(const std::vector<T>& a, const std::vector<T>& b);
template <class A, class B>
bool eq(const std::pair<A, B>& a, const std::pair<A, B>& b);

bool eq(const Done&, const Done&);
bool eq(const kms::Status& a, const kms::Status& b);
bool eq(const KeyPage& a, const KeyPage& b);
bool eq(const DataKey& a, const DataKey& b);
bool eq(const FileResult& a, const FileResult& b);
bool eq(const SecretInput& a, const SecretInput& b);
bool eq(const TokenInfo& a, const TokenInfo& b);
bool eq(const VaultCounts& a, const VaultCounts& b);
bool eq(const AuditHead& a, const AuditHead& b);
bool eq(const AuditRecord& a, const AuditRecord& b);
bool eq(const AuditFilter& a, const AuditFilter& b);
bool eq(const KeyMetadata& a, const KeyMetadata& b);
bool eq(const KeyVersionMetadata& a, const KeyVersionMetadata& b);
bool eq(const SecretMetadata& a, const SecretMetadata& b);
bool eq(const SecretVersionMetadata& a, const SecretVersionMetadata& b);
bool eq(const audit::Anchor& a, const audit::Anchor& b);
bool eq(const audit::VerifyReport& a, const audit::VerifyReport& b);
bool eq(const keys::CreateSpec& a, const keys::CreateSpec& b);
bool eq(const keys::KeyInfo& a, const keys::KeyInfo& b);
bool eq(const keys::Decrypted& a, const keys::Decrypted& b);
bool eq(const secrets::Generator& a, const secrets::Generator& b);
bool eq(const secrets::CreateSpec& a, const secrets::CreateSpec& b);
bool eq(const secrets::RotationChange& a, const secrets::RotationChange& b);
bool eq(const secrets::SecretInfo& a, const secrets::SecretInfo& b);
bool eq(const secrets::Value& a, const secrets::Value& b);
bool eq(const envelope::Recipient& a, const envelope::Recipient& b);
bool eq(const envelope::Header& a, const envelope::Header& b);
bool eq(const req::Status&, const req::Status&);
bool eq(const req::AuditList& a, const req::AuditList& b);
bool eq(const req::AuditVerify&, const req::AuditVerify&);
bool eq(const req::AuditExport& a, const req::AuditExport& b);
bool eq(const req::KeyCreate& a, const req::KeyCreate& b);
bool eq(const req::KeyList& a, const req::KeyList& b);
template <Op O>
bool eq(const req::OnKey<O>& a, const req::OnKey<O>& b);
bool eq(const req::KeySetRotation& a, const req::KeySetRotation& b);
bool eq(const req::KeyScheduleDeletion& a, const req::KeyScheduleDeletion& b);
bool eq(const req::KeyTag& a, const req::KeyTag& b);
bool eq(const req::KeyUntag& a, const req::KeyUntag& b);
bool eq(const req::AliasCreate& a, const req::AliasCreate& b);
bool eq(const req::AliasUpdate& a, const req::AliasUpdate& b);
bool eq(const req::AliasDelete& a, const req::AliasDelete& b);
bool eq(const req::AliasList&, const req::AliasList&);
bool eq(const req::Encrypt& a, const req::Encrypt& b);
bool eq(const req::Decrypt& a, const req::Decrypt& b);
bool eq(const req::ReEncrypt& a, const req::ReEncrypt& b);
bool eq(const req::GenerateDataKey& a, const req::GenerateDataKey& b);
bool eq(const req::Random& a, const req::Random& b);
bool eq(const req::FileWrap& a, const req::FileWrap& b);
bool eq(const req::FileWrap::Response& a, const req::FileWrap::Response& b);
bool eq(const req::FileUnwrap& a, const req::FileUnwrap& b);
bool eq(const req::FileUnwrap::Response& a, const req::FileUnwrap::Response& b);
bool eq(const req::FileEnd& a, const req::FileEnd& b);
bool eq(const req::FileFailed& a, const req::FileFailed& b);
bool eq(const req::FileRewrap& a, const req::FileRewrap& b);
bool eq(const req::FileRewrap::Response& a, const req::FileRewrap::Response& b);
bool eq(const req::SecretCreate& a, const req::SecretCreate& b);
bool eq(const req::SecretPut& a, const req::SecretPut& b);
bool eq(const secrets::ExecUse& a, const secrets::ExecUse& b);
bool eq(const req::SecretGet& a, const req::SecretGet& b);
bool eq(const req::SecretList&, const req::SecretList&);
template <Op O>
bool eq(const req::OnSecret<O>& a, const req::OnSecret<O>& b);
bool eq(const req::SecretDelete& a, const req::SecretDelete& b);
bool eq(const req::SecretSetRotation& a, const req::SecretSetRotation& b);
bool eq(const GrantInfo& a, const GrantInfo& b);
bool eq(const GrantPage& a, const GrantPage& b);
bool eq(const req::GrantCreate& a, const req::GrantCreate& b);
bool eq(const req::GrantList& a, const req::GrantList& b);
template <Op O>
bool eq(const req::OnGrant<O>& a, const req::OnGrant<O>& b);
bool eq(const KeyPolicyInfo& a, const KeyPolicyInfo& b);
bool eq(const req::KeySetPolicy& a, const req::KeySetPolicy& b);
bool eq(const req::KeyGetPolicy& a, const req::KeyGetPolicy& b);
bool eq(const keys::PublicKey& a, const keys::PublicKey& b);
bool eq(const keys::Signature& a, const keys::Signature& b);
bool eq(const keys::Verified& a, const keys::Verified& b);
bool eq(const req::GetPublicKey& a, const req::GetPublicKey& b);
bool eq(const keys::ImportParams& a, const keys::ImportParams& b);
bool eq(const req::KeyImportParams& a, const req::KeyImportParams& b);
bool eq(const req::KeyImport& a, const req::KeyImport& b);
bool eq(const req::Sign& a, const req::Sign& b);
bool eq(const req::Verify& a, const req::Verify& b);
bool eq(const req::Mac& a, const req::Mac& b);
bool eq(const req::VerifyMac& a, const req::VerifyMac& b);
bool eq(const SecretPolicyInfo& a, const SecretPolicyInfo& b);
bool eq(const req::SecretSetPolicy& a, const req::SecretSetPolicy& b);
bool eq(const req::SecretGetPolicy& a, const req::SecretGetPolicy& b);

// Scalars, enums, strings, Bytes and Context (a std::map of strings).
template <class T>
bool eq(const T& a, const T& b) {
  return a == b;
}
bool eq(const SecureBytes& a, const SecureBytes& b) {
  return std::ranges::equal(a.view(), b.view());
}
template <class T>
bool eq(const std::optional<T>& a, const std::optional<T>& b) {
  return a.has_value() == b.has_value() && (!a || eq(*a, *b));
}
template <class T>
bool eq(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!eq(a[i], b[i])) return false;
  }
  return true;
}
template <class A, class B>
bool eq(const std::pair<A, B>& a, const std::pair<A, B>& b) {
  return eq(a.first, b.first) && eq(a.second, b.second);
}

// Every member named, as the struct declares it.
template <class T, class... M>
bool members(const T& a, const T& b, M T::*... m) {
  return (eq(a.*m, b.*m) && ...);
}

bool eq(const Done&, const Done&) { return true; }
bool eq(const kms::Status& a, const kms::Status& b) {
  using T = kms::Status;
  return members(a, b, &T::vault_path, &T::vault_id, &T::created, &T::schema_version, &T::module,
                 &T::token, &T::private_token, &T::root_key_generation, &T::audit_records,
                 &T::counts, &T::audit_head, &T::root_key_seal);
}
bool eq(const KeyPage& a, const KeyPage& b) {
  return members(a, b, &KeyPage::keys, &KeyPage::next);
}
bool eq(const DataKey& a, const DataKey& b) {
  using T = DataKey;
  return members(a, b, &T::key_id, &T::key_version, &T::plaintext, &T::ciphertext_blob);
}
bool eq(const FileResult& a, const FileResult& b) {
  using T = FileResult;
  return members(a, b, &T::name, &T::keys, &T::bytes, &T::frames);
}
bool eq(const SecretInput& a, const SecretInput& b) {
  return members(a, b, &SecretInput::value, &SecretInput::generator);
}
bool eq(const TokenInfo& a, const TokenInfo& b) {
  using T = TokenInfo;
  return members(a, b, &T::slot, &T::label, &T::serial, &T::manufacturer, &T::model,
                 &T::initialized, &T::user_pin_initialized, &T::user_pin_locked,
                 &T::user_pin_final_try, &T::min_pin_len, &T::max_pin_len);
}
bool eq(const VaultCounts& a, const VaultCounts& b) {
  using T = VaultCounts;
  return members(a, b, &T::keys, &T::keys_due_rotation, &T::keys_due_deletion, &T::secrets,
                 &T::secrets_due_rotation, &T::secrets_due_deletion);
}
bool eq(const AuditHead& a, const AuditHead& b) {
  return members(a, b, &AuditHead::seq, &AuditHead::hash);
}
bool eq(const AuditRecord& a, const AuditRecord& b) {
  using T = AuditRecord;
  return members(a, b, &T::seq, &T::time, &T::principal, &T::uid, &T::action, &T::resource,
                 &T::params, &T::outcome, &T::error_code, &T::prev_hash, &T::hash, &T::mac,
                 &T::state);
}
bool eq(const AuditFilter& a, const AuditFilter& b) {
  using T = AuditFilter;
  return members(a, b, &T::since, &T::until, &T::action, &T::resource, &T::principal, &T::outcome,
                 &T::after_seq, &T::limit, &T::newest_first, &T::before_seq, &T::grant);
}
bool eq(const KeyMetadata& a, const KeyMetadata& b) {
  using T = KeyMetadata;
  return members(a, b, &T::id, &T::spec, &T::usage, &T::description, &T::state, &T::protection,
                 &T::created, &T::rotation_period_days, &T::last_rotated, &T::deletion_date,
                 &T::primary_version, &T::origin, &T::material_expires);
}
bool eq(const KeyVersionMetadata& a, const KeyVersionMetadata& b) {
  using T = KeyVersionMetadata;
  return members(a, b, &T::key_id, &T::version, &T::created);
}
bool eq(const SecretMetadata& a, const SecretMetadata& b) {
  using T = SecretMetadata;
  return members(a, b, &T::id, &T::name, &T::key_id, &T::description, &T::created, &T::updated,
                 &T::next_version, &T::gen_length, &T::gen_charset, &T::gen_exclude,
                 &T::rotation_period_days, &T::rotation_command, &T::last_rotated,
                 &T::rotation_status, &T::rotation_error, &T::deletion_date);
}
bool eq(const SecretVersionMetadata& a, const SecretVersionMetadata& b) {
  using T = SecretVersionMetadata;
  return members(a, b, &T::secret_id, &T::version, &T::created, &T::stage);
}
bool eq(const audit::Anchor& a, const audit::Anchor& b) {
  return members(a, b, &audit::Anchor::seq, &audit::Anchor::hash);
}
bool eq(const audit::VerifyReport& a, const audit::VerifyReport& b) {
  using T = audit::VerifyReport;
  return members(a, b, &T::ok, &T::records, &T::first_bad_seq, &T::problem, &T::anchor, &T::head,
                 &T::rows, &T::state_recorded_at);
}
bool eq(const keys::CreateSpec& a, const keys::CreateSpec& b) {
  using T = keys::CreateSpec;
  return members(a, b, &T::spec, &T::description, &T::alias, &T::tags, &T::rotation_days,
                 &T::protection, &T::usage, &T::origin);
}
bool eq(const keys::KeyInfo& a, const keys::KeyInfo& b) {
  using T = keys::KeyInfo;
  return members(a, b, &T::key, &T::aliases, &T::versions, &T::tags, &T::next_rotation);
}
bool eq(const keys::Decrypted& a, const keys::Decrypted& b) {
  using T = keys::Decrypted;
  return members(a, b, &T::plaintext, &T::key_id, &T::key_version);
}
bool eq(const secrets::Generator& a, const secrets::Generator& b) {
  using T = secrets::Generator;
  return members(a, b, &T::length, &T::charset, &T::exclude);
}
bool eq(const secrets::CreateSpec& a, const secrets::CreateSpec& b) {
  using T = secrets::CreateSpec;
  return members(a, b, &T::name, &T::key, &T::description, &T::tags, &T::rotation_days,
                 &T::rotation_command, &T::generator);
}
bool eq(const secrets::RotationChange& a, const secrets::RotationChange& b) {
  using T = secrets::RotationChange;
  return members(a, b, &T::set_period, &T::period_days, &T::set_command, &T::command);
}
bool eq(const secrets::SecretInfo& a, const secrets::SecretInfo& b) {
  using T = secrets::SecretInfo;
  return members(a, b, &T::secret, &T::key_aliases, &T::versions, &T::tags, &T::next_rotation);
}
bool eq(const secrets::Value& a, const secrets::Value& b) {
  using T = secrets::Value;
  return members(a, b, &T::value, &T::version, &T::stage);
}
bool eq(const envelope::Recipient& a, const envelope::Recipient& b) {
  return members(a, b, &envelope::Recipient::type, &envelope::Recipient::body);
}
bool eq(const envelope::Header& a, const envelope::Header& b) {
  using T = envelope::Header;
  return members(a, b, &T::version, &T::suite, &T::frame_size, &T::salt, &T::context,
                 &T::recipients, &T::commitment, &T::tag, &T::encoded_size);
}

bool eq(const req::Status&, const req::Status&) { return true; }
bool eq(const req::AuditList& a, const req::AuditList& b) { return eq(a.filter, b.filter); }
bool eq(const req::AuditVerify&, const req::AuditVerify&) { return true; }
bool eq(const req::AuditExport& a, const req::AuditExport& b) {
  return members(a, b, &req::AuditExport::dest, &req::AuditExport::overwrite);
}
bool eq(const req::KeyCreate& a, const req::KeyCreate& b) { return eq(a.spec, b.spec); }
bool eq(const req::KeyList& a, const req::KeyList& b) {
  return members(a, b, &req::KeyList::state, &req::KeyList::after, &req::KeyList::limit);
}
template <Op O>
bool eq(const req::OnKey<O>& a, const req::OnKey<O>& b) {
  return eq(a.key, b.key);
}
bool eq(const req::KeySetRotation& a, const req::KeySetRotation& b) {
  return members(a, b, &req::KeySetRotation::key, &req::KeySetRotation::days);
}
bool eq(const req::KeyScheduleDeletion& a, const req::KeyScheduleDeletion& b) {
  return members(a, b, &req::KeyScheduleDeletion::key, &req::KeyScheduleDeletion::pending_days);
}
bool eq(const req::KeyTag& a, const req::KeyTag& b) {
  return members(a, b, &req::KeyTag::key, &req::KeyTag::tags);
}
bool eq(const req::KeyUntag& a, const req::KeyUntag& b) {
  return members(a, b, &req::KeyUntag::key, &req::KeyUntag::names);
}
bool eq(const req::AliasCreate& a, const req::AliasCreate& b) {
  return members(a, b, &req::AliasCreate::alias, &req::AliasCreate::key);
}
bool eq(const req::AliasUpdate& a, const req::AliasUpdate& b) {
  return members(a, b, &req::AliasUpdate::alias, &req::AliasUpdate::key);
}
bool eq(const req::AliasDelete& a, const req::AliasDelete& b) { return eq(a.alias, b.alias); }
bool eq(const req::AliasList&, const req::AliasList&) { return true; }
bool eq(const req::Encrypt& a, const req::Encrypt& b) {
  return members(a, b, &req::Encrypt::key, &req::Encrypt::plaintext, &req::Encrypt::context,
                 &req::Encrypt::algorithm);
}
bool eq(const req::Decrypt& a, const req::Decrypt& b) {
  using T = req::Decrypt;
  return members(a, b, &T::blob, &T::context, &T::algorithm, &T::key, &T::key_version);
}
bool eq(const req::ReEncrypt& a, const req::ReEncrypt& b) {
  using T = req::ReEncrypt;
  return members(a, b, &T::blob, &T::context, &T::to_key, &T::to_context);
}
bool eq(const req::GenerateDataKey& a, const req::GenerateDataKey& b) {
  using T = req::GenerateDataKey;
  return members(a, b, &T::key, &T::bytes, &T::context);
}
bool eq(const req::Random& a, const req::Random& b) { return eq(a.bytes, b.bytes); }
bool eq(const req::FileWrap& a, const req::FileWrap& b) {
  using T = req::FileWrap;
  return members(a, b, &T::name, &T::keys, &T::data_key, &T::context);
}
bool eq(const req::FileWrap::Response& a, const req::FileWrap::Response& b) {
  using T = req::FileWrap::Response;
  return members(a, b, &T::recipients, &T::keys);
}
bool eq(const req::FileUnwrap& a, const req::FileUnwrap& b) {
  using T = req::FileUnwrap;
  return members(a, b, &T::name, &T::context, &T::recipients);
}
bool eq(const req::FileUnwrap::Response& a, const req::FileUnwrap::Response& b) {
  using T = req::FileUnwrap::Response;
  return members(a, b, &T::data_key, &T::keys);
}
bool eq(const req::FileEnd& a, const req::FileEnd& b) {
  using T = req::FileEnd;
  return members(a, b, &T::ok, &T::bytes, &T::frames, &T::code, &T::signal, &T::message);
}
bool eq(const req::FileFailed& a, const req::FileFailed& b) {
  using T = req::FileFailed;
  return members(a, b, &T::action, &T::name, &T::code, &T::signal);
}
bool eq(const req::FileRewrap& a, const req::FileRewrap& b) {
  using T = req::FileRewrap;
  return members(a, b, &T::name, &T::header, &T::to_key);
}
bool eq(const req::FileRewrap::Response& a, const req::FileRewrap::Response& b) {
  using T = req::FileRewrap::Response;
  return members(a, b, &T::header, &T::result);
}
bool eq(const req::SecretCreate& a, const req::SecretCreate& b) {
  return members(a, b, &req::SecretCreate::spec, &req::SecretCreate::input);
}
bool eq(const req::SecretPut& a, const req::SecretPut& b) {
  return members(a, b, &req::SecretPut::name, &req::SecretPut::input);
}
bool eq(const secrets::ExecUse& a, const secrets::ExecUse& b) {
  return members(a, b, &secrets::ExecUse::env, &secrets::ExecUse::command);
}
bool eq(const req::SecretGet& a, const req::SecretGet& b) {
  using T = req::SecretGet;
  return members(a, b, &T::name, &T::stage, &T::version, &T::exec);
}
bool eq(const req::SecretList&, const req::SecretList&) { return true; }
template <Op O>
bool eq(const req::OnSecret<O>& a, const req::OnSecret<O>& b) {
  return eq(a.name, b.name);
}
bool eq(const req::SecretDelete& a, const req::SecretDelete& b) {
  return members(a, b, &req::SecretDelete::name, &req::SecretDelete::days);
}
bool eq(const req::SecretSetRotation& a, const req::SecretSetRotation& b) {
  return members(a, b, &req::SecretSetRotation::name, &req::SecretSetRotation::change);
}
bool eq(const GrantInfo& a, const GrantInfo& b) {
  using T = GrantInfo;
  return members(a, b, &T::id, &T::key_id, &T::grantee_uid, &T::grantee, &T::operations,
                 &T::context_equals, &T::context_subset, &T::retiring_uid, &T::retiring_principal,
                 &T::name, &T::created, &T::created_by_uid, &T::expires, &T::state, &T::ended);
}
bool eq(const GrantPage& a, const GrantPage& b) {
  return members(a, b, &GrantPage::grants, &GrantPage::next);
}
bool eq(const req::GrantCreate& a, const req::GrantCreate& b) {
  using T = grants::CreateSpec;
  return members(a.spec, b.spec, &T::key, &T::grantee, &T::operations, &T::context_equals,
                 &T::context_subset, &T::retiring_principal, &T::expires, &T::name);
}
bool eq(const req::GrantList& a, const req::GrantList& b) {
  using T = grants::ListFilter;
  return members(a.filter, b.filter, &T::key, &T::grantee, &T::all, &T::after, &T::limit);
}
template <Op O>
bool eq(const req::OnGrant<O>& a, const req::OnGrant<O>& b) {
  return a.grant == b.grant;
}
bool eq(const KeyPolicyInfo& a, const KeyPolicyInfo& b) {
  using T = KeyPolicyInfo;
  return members(a, b, &T::key_id, &T::text, &T::sha256, &T::updated, &T::updated_by_uid);
}
bool eq(const req::KeySetPolicy& a, const req::KeySetPolicy& b) {
  return members(a, b, &req::KeySetPolicy::key, &req::KeySetPolicy::text);
}
bool eq(const req::KeyGetPolicy& a, const req::KeyGetPolicy& b) { return a.key == b.key; }
bool eq(const keys::PublicKey& a, const keys::PublicKey& b) {
  using T = keys::PublicKey;
  return members(a, b, &T::key_id, &T::key_version, &T::spec, &T::usage, &T::spki);
}
bool eq(const keys::Signature& a, const keys::Signature& b) {
  using T = keys::Signature;
  return members(a, b, &T::key_id, &T::key_version, &T::value);
}
bool eq(const keys::Verified& a, const keys::Verified& b) {
  using T = keys::Verified;
  return members(a, b, &T::key_id, &T::key_version, &T::valid);
}
bool eq(const req::GetPublicKey& a, const req::GetPublicKey& b) {
  return members(a, b, &req::GetPublicKey::key, &req::GetPublicKey::key_version);
}
bool eq(const keys::ImportParams& a, const keys::ImportParams& b) {
  using T = keys::ImportParams;
  return members(a, b, &T::key_id, &T::wrapping_algorithm, &T::public_key, &T::import_token,
                 &T::expires);
}
bool eq(const req::KeyImportParams& a, const req::KeyImportParams& b) {
  return members(a, b, &req::KeyImportParams::key, &req::KeyImportParams::wrapping_algorithm);
}
bool eq(const req::KeyImport& a, const req::KeyImport& b) {
  using T = req::KeyImport;
  return members(a, b, &T::key, &T::wrapped_material, &T::import_token, &T::expires);
}
bool eq(const req::Sign& a, const req::Sign& b) {
  using T = req::Sign;
  return members(a, b, &T::key, &T::algorithm, &T::input, &T::is_digest);
}
bool eq(const req::Verify& a, const req::Verify& b) {
  using T = req::Verify;
  return members(a, b, &T::key, &T::algorithm, &T::input, &T::is_digest, &T::signature,
                 &T::key_version);
}
bool eq(const req::Mac& a, const req::Mac& b) {
  return members(a, b, &req::Mac::key, &req::Mac::message);
}
bool eq(const req::VerifyMac& a, const req::VerifyMac& b) {
  return members(a, b, &req::VerifyMac::key, &req::VerifyMac::message, &req::VerifyMac::mac);
}
bool eq(const SecretPolicyInfo& a, const SecretPolicyInfo& b) {
  using T = SecretPolicyInfo;
  return members(a, b, &T::name, &T::secret_id, &T::text, &T::sha256, &T::updated,
                 &T::updated_by_uid);
}
bool eq(const req::SecretSetPolicy& a, const req::SecretSetPolicy& b) {
  return members(a, b, &req::SecretSetPolicy::name, &req::SecretSetPolicy::text);
}
bool eq(const req::SecretGetPolicy& a, const req::SecretGetPolicy& b) { return a.name == b.name; }

// ---- samples: every member away from its default ----

SecureBytes secure(std::string_view s) { return SecureBytes(as_bytes(s)); }

const std::string kKeyId = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
const std::string kTime = "2026-01-02T03:04:05.006Z";

Context context() { return {{"app", "web"}, {"env", "prod"}, {"", "empty key"}}; }
std::vector<std::pair<std::string, std::string>> tags() {
  return {{"team", "payments"}, {"cost", ""}, {"team", "billing"}};
}

KeyMetadata key_row() {
  KeyMetadata k;
  k.id = kKeyId;
  k.spec = KeySpec::aes_256;
  k.usage = KeyUsage::encrypt;
  k.description = "orders, né en 2026";
  k.state = KeyState::pending_deletion;
  k.protection = Protection::hsm;
  k.created = kTime;
  k.rotation_period_days = 90;
  k.last_rotated = "2026-02-02T00:00:00.000Z";
  k.deletion_date = "2026-03-03T00:00:00.000Z";
  k.primary_version = 3;
  k.origin = Origin::external;
  k.material_expires = "2027-04-04T00:00:00.000Z";
  return k;
}

keys::KeyInfo key_info() {
  keys::KeyInfo k;
  k.key = key_row();
  k.aliases = {"alias/orders", "alias/o"};
  KeyVersionMetadata v1{kKeyId, 1, kTime};
  KeyVersionMetadata v3{kKeyId, 3, "2026-02-02T00:00:00.000Z"};
  k.versions = {v1, v3};
  k.tags = tags();
  k.next_rotation = "2026-05-02T00:00:00.000Z";
  return k;
}

SecretMetadata secret_row() {
  SecretMetadata s;
  s.id = "0f0e0d0c-0b0a-4908-8706-050403020100";
  s.name = "db/password";
  s.key_id = kKeyId;
  s.description = "the database";
  s.created = kTime;
  s.updated = "2026-01-03T00:00:00.000Z";
  s.next_version = 4;
  s.gen_length = 40;
  s.gen_charset = "hex";
  s.gen_exclude = "0O";
  s.rotation_period_days = 30;
  s.rotation_command = "/usr/libexec/rotate-db";
  s.last_rotated = "2026-01-04T00:00:00.000Z";
  s.rotation_status = RotationStatus::failed;
  s.rotation_error = "exited with status 3";
  s.deletion_date = "2026-04-04T00:00:00.000Z";
  return s;
}

secrets::SecretInfo secret_info() {
  secrets::SecretInfo s;
  s.secret = secret_row();
  s.key_aliases = {"alias/orders"};
  s.versions = {{s.secret.id, 2, kTime, SecretStage::previous},
                {s.secret.id, 3, kTime, std::nullopt}};
  s.tags = tags();
  s.next_rotation = "2026-02-03T00:00:00.000Z";
  return s;
}

AuditRecord audit_row(std::int64_t seq) {
  AuditRecord r;
  r.seq = seq;
  r.time = kTime;
  r.principal = "alice";
  r.uid = -2;  // a signed 64-bit field travels as its two's complement
  r.action = "key.create";
  r.resource = "key/" + kKeyId;
  r.params = R"({"alias":"alias/orders"})";
  r.outcome = "ok";
  r.error_code = "refused";
  r.prev_hash = Bytes(32, 0xa1);
  r.hash = Bytes(32, 0xa2);
  r.mac = Bytes(32, 0xa3);
  r.state = Bytes(32, 0xa4);
  return r;
}

envelope::Header header() {
  envelope::Header h;
  h.version = 9;
  h.suite = 200;
  h.frame_size = 4096;
  h.salt = Bytes(32, 0x11);
  h.context = context();
  h.recipients = {{2, Bytes(85, 0x5a)}, {255, {}}};
  h.commitment = Bytes(32, 0x22);
  h.tag = Bytes(32, 0x33);
  h.encoded_size = 1234;
  return h;
}

secrets::Generator generator() { return {40, "alnum-symbols", "\"'\\"}; }

FileResult file_result() {
  FileResult r;
  r.name = "/home/alice/report.pdf";
  r.keys = {{kKeyId, 3}, {"other", std::int64_t{1} << 40}};
  r.bytes = std::uint64_t{1} << 40;
  r.frames = 1048577;
  return r;
}

// One sample of each request and response type; a type without one fails to link.
template <class T>
T sample();

template <>
Done sample<Done>() {
  return {};
}
template <>
kms::Status sample<kms::Status>() {
  kms::Status s;
  s.vault_path = "/home/alice/.local/share/kmsctl/vault.db";
  s.vault_id = "8d5a6c1e-3f2b-4a7d-9e01-23456789abcd";
  s.created = kTime;
  s.schema_version = 4;
  s.module = "/usr/lib/softhsm/libsofthsm2.so";
  s.token.slot = 1234567890123;  // beyond 32 bits: an unsigned long travels as u64
  s.token.label = "kmsctl";
  s.token.serial = "9f1e";
  s.token.manufacturer = "SoftHSM project";
  s.token.model = "SoftHSM v2";
  s.token.initialized = true;
  s.token.user_pin_initialized = true;
  s.token.user_pin_locked = true;
  s.token.user_pin_final_try = true;
  s.token.min_pin_len = 4;
  s.token.max_pin_len = 255;
  s.private_token = true;
  s.root_key_generation = 2;
  s.root_key_seal = "hmac-sha256";
  s.audit_records = 41;
  s.counts = {1, 2, 3, 4, 5, 6};
  s.audit_head = {41, Bytes(32, 0xab)};
  return s;
}
template <>
std::vector<AuditRecord> sample<std::vector<AuditRecord>>() {
  return {audit_row(7), audit_row(std::int64_t{1} << 33)};
}
template <>
audit::VerifyReport sample<audit::VerifyReport>() {
  audit::VerifyReport r;
  r.ok = false;
  r.records = 41;
  r.first_bad_seq = 17;
  r.problem = "record 17: hash mismatch";
  r.anchor = audit::Anchor{40, Bytes(32, 0xcd)};
  r.head = AuditHead{41, Bytes(32, 0xef)};
  r.rows = 12;
  r.state_recorded_at = 39;
  return r;
}
template <>
std::int64_t sample<std::int64_t>() {
  return -1234567890123;
}
template <>
keys::KeyInfo sample<keys::KeyInfo>() {
  return key_info();
}
template <>
KeyPage sample<KeyPage>() {
  KeyPage p;
  p.keys = {key_info(), key_info()};
  p.keys[1].key.id = "second";
  p.next = "second";
  return p;
}
template <>
std::vector<std::pair<std::string, std::string>>
sample<std::vector<std::pair<std::string, std::string>>>() {
  return {{"alias/orders", kKeyId}, {"alias/o", kKeyId}};
}
template <>
Bytes sample<Bytes>() {
  Bytes b(85, 0);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i * 3);
  return b;
}
template <>
keys::Decrypted sample<keys::Decrypted>() {
  return {secure("hello, kms"), kKeyId, 3};
}
template <>
DataKey sample<DataKey>() {
  return {kKeyId, 3, SecureBytes(Bytes(32, 0x42)), Bytes(85, 0x43)};
}
template <>
req::FileWrap::Response sample<req::FileWrap::Response>() {
  return {{{1, Bytes(85, 0x44)}, {7, {}}}, {{kKeyId, 3}, {"other", 1}}};
}
template <>
req::FileUnwrap::Response sample<req::FileUnwrap::Response>() {
  return {SecureBytes(Bytes(32, 0x45)), {{kKeyId, 3}}};
}
template <>
req::FileRewrap::Response sample<req::FileRewrap::Response>() {
  return {Bytes(300, 0x46), file_result()};
}
template <>
secrets::SecretInfo sample<secrets::SecretInfo>() {
  return secret_info();
}
template <>
std::vector<secrets::SecretInfo> sample<std::vector<secrets::SecretInfo>>() {
  std::vector<secrets::SecretInfo> v;
  v.push_back(secret_info());
  v.push_back(secret_info());
  v[1].secret.name = "api/token";
  return v;
}
template <>
secrets::Value sample<secrets::Value>() {
  return {secure("s3cret\n\0with a zero"sv), 5, SecretStage::pending};
}

template <>
req::Status sample<req::Status>() {
  return {};
}
template <>
req::AuditList sample<req::AuditList>() {
  req::AuditList r;
  r.filter.since = "2026-01-01T00:00:00.000Z";
  r.filter.until = "2026-02-01T00:00:00.000Z";
  r.filter.action = "key.create";
  r.filter.resource = "key/" + kKeyId;
  r.filter.principal = "alice";
  r.filter.outcome = "denied";
  r.filter.after_seq = 5;
  r.filter.limit = 7;
  r.filter.newest_first = false;
  r.filter.before_seq = 9;
  r.filter.grant = "g-0123456789abcdef01234567";
  return r;
}
template <>
req::AuditVerify sample<req::AuditVerify>() {
  return {};
}
template <>
req::AuditExport sample<req::AuditExport>() {
  return {"/tmp/audit.jsonl", true};
}
template <>
req::KeyCreate sample<req::KeyCreate>() {
  return {keys::CreateSpec{KeySpec::ec_sm2, "orders", "alias/orders", tags(), 90, Protection::hsm,
                           KeyUsage::sign, Origin::external}};
}
template <>
req::KeyList sample<req::KeyList>() {
  return {KeyState::disabled, "after-this-id", 3};
}
template <>
req::KeyDescribe sample<req::KeyDescribe>() {
  return {"alias/describe"};
}
template <>
req::KeyEnable sample<req::KeyEnable>() {
  return {"alias/enable"};
}
template <>
req::KeyDisable sample<req::KeyDisable>() {
  return {"alias/disable"};
}
template <>
req::KeyRotate sample<req::KeyRotate>() {
  return {kKeyId};
}
template <>
req::KeyCancelDeletion sample<req::KeyCancelDeletion>() {
  return {"alias/cancel"};
}
template <>
req::KeySetRotation sample<req::KeySetRotation>() {
  return {"alias/k", 180};
}
template <>
req::KeyScheduleDeletion sample<req::KeyScheduleDeletion>() {
  return {"alias/k", 7};
}
template <>
req::KeyTag sample<req::KeyTag>() {
  return {"alias/k", tags()};
}
template <>
req::KeyUntag sample<req::KeyUntag>() {
  return {"alias/k", {"team", "", "cost"}};
}
template <>
req::AliasCreate sample<req::AliasCreate>() {
  return {"alias/new", kKeyId};
}
template <>
req::AliasUpdate sample<req::AliasUpdate>() {
  return {"alias/new", "alias/other"};
}
template <>
req::AliasDelete sample<req::AliasDelete>() {
  return {"alias/old"};
}
template <>
req::AliasList sample<req::AliasList>() {
  return {};
}
template <>
req::Encrypt sample<req::Encrypt>() {
  return {"alias/k", secure("plain text"), context(), EncryptionAlgorithm::rsaes_oaep_sha_256};
}
template <>
req::Decrypt sample<req::Decrypt>() {
  return {Bytes(60, 0x47), context(), EncryptionAlgorithm::sm2pke, "alias/k", 7};
}
template <>
req::ReEncrypt sample<req::ReEncrypt>() {
  return {Bytes(60, 0x48), context(), "alias/to", {{"to", "there"}}};
}
template <>
req::GenerateDataKey sample<req::GenerateDataKey>() {
  return {"alias/k", 64, context()};
}
template <>
req::Random sample<req::Random>() {
  return {1000};
}
template <>
req::FileWrap sample<req::FileWrap>() {
  return {"/home/alice/report.pdf", {"alias/a", kKeyId}, SecureBytes(Bytes(32, 0x49)), context()};
}
template <>
req::FileUnwrap sample<req::FileUnwrap>() {
  return {"-", context(), header().recipients};
}
template <>
req::FileEnd sample<req::FileEnd>() {
  return {true, std::uint64_t{1} << 40, 1048577, Code::integrity, 15, "cut short"};
}
template <>
req::FileFailed sample<req::FileFailed>() {
  return {Action::file_encrypt, "/home/alice/report.pdf.kenc", Code::unavailable, 2};
}
template <>
req::FileRewrap sample<req::FileRewrap>() {
  return {"/home/alice/report.pdf.kenc", header(), "alias/new"};
}
template <>
req::SecretCreate sample<req::SecretCreate>() {
  req::SecretCreate r;
  r.spec = {"db/password", "alias/k", "the database", tags(), 30, "/usr/libexec/rotate-db",
            generator()};
  r.input.value = secure("hunter2");
  r.input.generator = generator();
  return r;
}
template <>
req::SecretPut sample<req::SecretPut>() {
  req::SecretPut r;
  r.name = "db/password";
  r.input.value = secure("");  // an empty value is a value, not "generate"
  r.input.generator = generator();
  return r;
}
template <>
req::SecretGet sample<req::SecretGet>() {
  return {"db/password", SecretStage::previous, 4, secrets::ExecUse{"DB_PASSWORD", "psql"}};
}
template <>
req::SecretList sample<req::SecretList>() {
  return {};
}
template <>
req::SecretDescribe sample<req::SecretDescribe>() {
  return {"db/describe"};
}
template <>
req::SecretVersions sample<req::SecretVersions>() {
  return {"db/versions"};
}
template <>
req::SecretRestore sample<req::SecretRestore>() {
  return {"db/restore"};
}
template <>
req::SecretDelete sample<req::SecretDelete>() {
  return {"db/password", 7};
}
template <>
req::SecretSetRotation sample<req::SecretSetRotation>() {
  return {"db/password", secrets::RotationChange{true, 60, true, "/bin/rotate"}};
}
GrantInfo grant_info() {
  GrantInfo g;
  g.id = "g-0123456789abcdef01234567";
  g.key_id = kKeyId;
  g.grantee_uid = std::int64_t{1} << 33;
  g.grantee = "user:isv";
  g.operations = {"kms:Encrypt", "kms:Decrypt"};
  g.context_equals = Context{{"app", "billing"}};
  g.context_subset = {{"tenant", "t1"}};
  g.retiring_uid = 1001;
  g.retiring_principal = "user:owner";
  g.name = "isv-billing";
  g.created = kTime;
  g.created_by_uid = 1000;
  g.expires = "2027-01-01T00:00:00.000Z";
  g.state = GrantState::revoked;
  g.ended = kTime;
  return g;
}
template <>
GrantInfo sample<GrantInfo>() {
  return grant_info();
}
template <>
GrantPage sample<GrantPage>() {
  GrantPage p;
  p.grants = {grant_info(), grant_info()};
  p.grants[1].id = "g-fedcba9876543210fedcba98";
  p.next = p.grants[1].id;
  return p;
}
template <>
req::GrantCreate sample<req::GrantCreate>() {
  req::GrantCreate r;
  r.spec.key = "alias/app";
  r.spec.grantee = "user:isv";
  r.spec.operations = {"Encrypt", "kms:Decrypt"};
  r.spec.context_equals = Context{{"app", "billing"}};
  r.spec.context_subset = {{"tenant", "t1"}};
  r.spec.retiring_principal = "uid:1001";
  r.spec.expires = "30d";
  r.spec.name = "isv-billing";
  return r;
}
template <>
req::GrantList sample<req::GrantList>() {
  req::GrantList r;
  r.filter.key = "alias/app";
  r.filter.grantee = "user:isv";
  r.filter.all = true;
  r.filter.after = "g-0123456789abcdef01234567";
  r.filter.limit = 7;
  return r;
}
template <>
req::GrantRevoke sample<req::GrantRevoke>() {
  return {"g-0123456789abcdef01234567"};
}
template <>
req::GrantRetire sample<req::GrantRetire>() {
  return {"g-fedcba9876543210fedcba98"};
}
template <>
KeyPolicyInfo sample<KeyPolicyInfo>() {
  KeyPolicyInfo p;
  p.key_id = kKeyId;
  p.text = "[[statements]]\neffect = \"allow\"\n";
  p.sha256 = std::string(64, 'a');
  p.updated = kTime;
  p.updated_by_uid = std::int64_t{1} << 33;
  return p;
}
template <>
req::KeySetPolicy sample<req::KeySetPolicy>() {
  return {"alias/app", std::string("{\"statements\": []}")};
}
template <>
req::KeyGetPolicy sample<req::KeyGetPolicy>() {
  return {"alias/app"};
}
template <>
keys::PublicKey sample<keys::PublicKey>() {
  return {kKeyId, 2, KeySpec::ec_p384, KeyUsage::sign, Bytes(120, 0x30)};
}
template <>
keys::Signature sample<keys::Signature>() {
  return {kKeyId, 4, Bytes(71, 0x30)};
}
template <>
keys::Verified sample<keys::Verified>() {
  return {kKeyId, 3, true};
}
template <>
req::GetPublicKey sample<req::GetPublicKey>() {
  return {"alias/signer", 2};
}
template <>
keys::ImportParams sample<keys::ImportParams>() {
  const std::string token = "kmsctl-import-token-v1." + kKeyId + "." + std::string(64, 'a');
  return {kKeyId, WrappingAlgorithm::rsa_aes_key_wrap_sha_256, Bytes(422, 0x30),
          Bytes(token.begin(), token.end()), kTime};
}
template <>
req::KeyImportParams sample<req::KeyImportParams>() {
  return {"alias/byok", WrappingAlgorithm::rsa_aes_key_wrap_sha_256};
}
template <>
req::KeyImport sample<req::KeyImport>() {
  const std::string token = "kmsctl-import-token-v1." + kKeyId + "." + std::string(64, 'b');
  return {"alias/byok", Bytes(424, 0x5a), Bytes(token.begin(), token.end()),
          "2027-05-05T00:00:00.000Z"};
}
template <>
req::Sign sample<req::Sign>() {
  return {"alias/signer", SigningAlgorithm::rsassa_pss_sha_256, secure("message"), true};
}
template <>
req::Verify sample<req::Verify>() {
  return {"alias/signer", SigningAlgorithm::sm2dsa, secure("message"), false, Bytes(64, 0x31), 5};
}
template <>
req::Mac sample<req::Mac>() {
  return {"alias/mac", secure("log line")};
}
template <>
req::VerifyMac sample<req::VerifyMac>() {
  return {"alias/mac", secure("log line"), Bytes(32, 0x32)};
}
template <>
SecretPolicyInfo sample<SecretPolicyInfo>() {
  SecretPolicyInfo p;
  p.name = "app/db";
  p.secret_id = "0f8e2b9c-3c1d-4e5f-8a7b-6c5d4e3f2a1b";
  p.text = "[[statements]]\neffect = \"deny\"\n";
  p.sha256 = std::string(64, 'b');
  p.updated = kTime;
  p.updated_by_uid = std::int64_t{1} << 34;
  return p;
}
template <>
req::SecretSetPolicy sample<req::SecretSetPolicy>() {
  return {"app/db", std::string("{\"statements\": []}")};
}
template <>
req::SecretGetPolicy sample<req::SecretGetPolicy>() {
  return {"app/db"};
}

// ---- encoding helpers ----

template <class T>
Bytes encoded(const T& value) {
  wire::Writer w;
  wire::encode(w, value);
  return Bytes(w.view().begin(), w.view().end());
}

template <class T>
std::optional<T> decoded(ByteView in) {
  wire::Reader r(in);
  return wire::decode<T>(r);
}

// Encodes, parses back, compares, and checks that the value encodes to the same bytes again.
template <class T>
void check_round_trip(const T& value, const char* what) {
  CAPTURE(what);
  const Bytes bytes = encoded(value);
  const std::optional<T> back = decoded<T>(bytes);
  REQUIRE(back);
  CHECK(eq(*back, value));
  CHECK(encoded(*back) == bytes);
}

template <class T>
const char* name_of() {
  return __PRETTY_FUNCTION__;
}

template <class... R>
void round_trip_requests(RequestList<R...>) {
  (check_round_trip(sample<R>(), name_of<R>()), ...);
}
template <class... R>
void round_trip_responses(RequestList<R...>) {
  (check_round_trip(sample<typename R::Response>(), name_of<typename R::Response>()), ...);
}
// A sample equal to the default value would not show a field left out of its list.
template <class R>
void check_not_default() {
  if constexpr (!std::is_empty_v<R>) {
    CHECK_MESSAGE(!eq(sample<R>(), R{}), name_of<R>());
  }
}
template <class... R>
void samples_differ_from_default(RequestList<R...>) {
  (check_not_default<R>(), ...);
}
template <class... R>
void collect_ops(RequestList<R...>, std::vector<std::uint16_t>& ops) {
  (ops.push_back(static_cast<std::uint16_t>(R::op)), ...);
}

// The bytes of a request payload (no length prefix), as request_frame writes it.
template <class R>
Bytes request_payload(const std::string& vault, const R& r) {
  const wire::Writer f = request_frame(static_cast<std::uint16_t>(R::op), vault,
                                       [&](wire::Writer& w) { wire::encode(w, r); });
  return Bytes(f.view().begin() + 4, f.view().end());
}

Bytes payload_of(const wire::Writer& frame) {
  const ByteView v = frame.view();
  REQUIRE(v.size() >= 4);
  const std::uint32_t n =
      std::uint32_t{v[0]} << 24 | std::uint32_t{v[1]} << 16 | std::uint32_t{v[2]} << 8 | v[3];
  CHECK(n == v.size() - 4);
  return Bytes(v.begin() + 4, v.end());
}

void put_u32(Bytes& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

void append_lp(Bytes& b, std::string_view s) {
  const std::size_t at = b.size();
  b.resize(at + 4);
  put_u32(b, at, static_cast<std::uint32_t>(s.size()));
  b.insert(b.end(), s.begin(), s.end());
}

}  // namespace

// ---- fields ----

TEST_CASE("every request type encodes and parses back to the same value and the same bytes") {
  round_trip_requests(CallRequests{});
  round_trip_requests(SessionRequests{});
  samples_differ_from_default(CallRequests{});
  samples_differ_from_default(SessionRequests{});
}

TEST_CASE("every response type encodes and parses back to the same value and the same bytes") {
  round_trip_responses(CallRequests{});
  round_trip_responses(SessionRequests{});
}

TEST_CASE("values at the edges parse back: empty, absent, extreme integers") {
  check_round_trip(req::KeyList{}, "KeyList{}");
  check_round_trip(req::SecretPut{}, "SecretPut{} (a value to generate)");
  check_round_trip(req::FileEnd{false, 0, UINT64_MAX, Code::failed, INT32_MIN, ""}, "FileEnd");
  check_round_trip(req::FileFailed{Action::agent_request, "", Code::usage, INT32_MAX}, "Failed");
  check_round_trip(req::KeyScheduleDeletion{"", INT64_MIN}, "KeyScheduleDeletion");
  check_round_trip(req::SecretGet{"x", std::nullopt, INT64_MAX, std::nullopt}, "SecretGet");
  check_round_trip(req::Decrypt{{}, {}, {}, {}, {}}, "Decrypt");
  check_round_trip(keys::KeyInfo{}, "KeyInfo{}");
  check_round_trip(envelope::Header{}, "Header{}");
}

TEST_CASE("the encoding is the one FORMAT.md §13.3 gives, field by field") {
  // KeyList: optional<KeyState> ‖ optional<string> ‖ i64
  CHECK(encoded(req::KeyList{KeyState::disabled, "ab", -2}) ==
        Bytes{1, 1, 1, 0, 0, 0, 2, 'a', 'b', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe});
  CHECK(encoded(req::KeyList{std::nullopt, std::nullopt, 1}) ==
        Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  // FileFailed: enum u8 ‖ string ‖ enum u8 ‖ i32 as u32be
  CHECK(encoded(req::FileFailed{Action::file_decrypt, "f", Code::integrity, -1}) ==
        Bytes{static_cast<std::uint8_t>(Action::file_decrypt), 0, 0, 0, 1, 'f', 5, 0xff, 0xff, 0xff,
              0xff});
  // Random: u32 ‖ nothing else; Decrypt: bytes ‖ map (count ‖ key ‖ value, keys ascending)
  CHECK(encoded(req::Random{0x01020304}) == Bytes{1, 2, 3, 4});
  // ... ‖ enum u8 ‖ string ‖ optional (u8 0: none)
  CHECK(encoded(req::Decrypt{Bytes{9}, {{"b", "2"}, {"a", "1"}}, {}, {}, {}}) ==
        Bytes{0,   0, 0, 1, 9, 0,   0, 0, 2, 0, 0,   0, 1, 'a', 0, 0, 0, 1,
              '1', 0, 0, 0, 1, 'b', 0, 0, 0, 1, '2', 0, 0, 0,   0, 0, 0});
  // KeyUntag: string ‖ list (count ‖ items); Done and the requests without fields: no bytes
  CHECK(encoded(req::KeyUntag{"k", {"x", ""}}) ==
        Bytes{0, 0, 0, 1, 'k', 0, 0, 0, 2, 0, 0, 0, 1, 'x', 0, 0, 0, 0});
  CHECK(encoded(Done{}).empty());
  CHECK(encoded(req::Status{}).empty());
}

// ---- what the decoder refuses ----

TEST_CASE("a value with bytes after its last field is refused") {
  Bytes b = encoded(sample<req::KeyTag>());
  b.push_back(0);
  CHECK_FALSE(decoded<req::KeyTag>(b));
  CHECK_FALSE(decoded<Done>(Bytes{0}));
  CHECK_FALSE(decoded<req::Status>(Bytes{0}));
  CHECK(decoded<Done>(Bytes{}));
}

TEST_CASE("every truncation of an encoded request is refused") {
  const Bytes b = encoded(sample<req::SecretCreate>());
  for (std::size_t n = 0; n < b.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(decoded<req::SecretCreate>(ByteView(b.data(), n)));
  }
  const Bytes f = encoded(sample<req::FileRewrap>());
  for (std::size_t n = 0; n < f.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(decoded<req::FileRewrap>(ByteView(f.data(), n)));
  }
}

TEST_CASE("a bool is 0 or 1; an optional's flag too") {
  Bytes b = encoded(req::AuditExport{"d", true});  // lp("d") ‖ bool
  REQUIRE(b.size() == 6);
  CHECK(decoded<req::AuditExport>(b)->overwrite);
  b[5] = 0;
  CHECK_FALSE(decoded<req::AuditExport>(b)->overwrite);
  for (std::uint8_t v : {2, 0x80, 0xff}) {
    b[5] = v;
    CHECK_FALSE(decoded<req::AuditExport>(b));
  }
  Bytes k = encoded(req::KeyList{KeyState::enabled, std::nullopt, 1});  // flag ‖ state ‖ flag ‖ i64
  REQUIRE(decoded<req::KeyList>(k));
  for (std::uint8_t v : {2, 0xff}) {
    Bytes first = k;
    first[0] = v;
    CHECK_FALSE(decoded<req::KeyList>(first));
    Bytes second = k;
    second[2] = v;
    CHECK_FALSE(decoded<req::KeyList>(second));
  }
}

TEST_CASE("an enum value outside its range is refused") {
  Bytes k = encoded(req::KeyList{KeyState::enabled, std::nullopt, 1});
  for (std::uint8_t v = 0; v < 4; ++v) {
    k[1] = v;
    REQUIRE(decoded<req::KeyList>(k));
    CHECK(decoded<req::KeyList>(k)->state == static_cast<KeyState>(v));
  }
  for (std::uint8_t v : {4, 5, 0xff}) {
    k[1] = v;
    CHECK_FALSE(decoded<req::KeyList>(k));
  }
  // FileEnd: ok u8 ‖ bytes u64 ‖ frames u64 ‖ code u8 at offset 17
  Bytes e = encoded(req::FileEnd{});
  REQUIRE(e.size() == 1 + 8 + 8 + 1 + 4 + 4);
  for (std::uint8_t v = 1; v <= 6; ++v) {
    e[17] = v;
    REQUIRE(decoded<req::FileEnd>(e));
    CHECK(decoded<req::FileEnd>(e)->code == static_cast<Code>(v));
  }
  for (std::uint8_t v : {0, 7, 0xff}) {
    e[17] = v;
    CHECK_FALSE(decoded<req::FileEnd>(e));
  }
  Bytes a = encoded(req::FileFailed{});  // action u8 first
  a[0] = static_cast<std::uint8_t>(actions().size());
  CHECK_FALSE(decoded<req::FileFailed>(a));
  a[0] = static_cast<std::uint8_t>(actions().size() - 1);
  CHECK(decoded<req::FileFailed>(a));
  Bytes g = encoded(req::SecretGet{"", SecretStage::current, std::nullopt, std::nullopt});
  g[5] = 3;  // lp("") ‖ flag ‖ stage
  CHECK_FALSE(decoded<req::SecretGet>(g));
}

TEST_CASE("an integer that does not fit its field is refused") {
  // Recipient: type (one byte in memory, u32be on the wire) ‖ body
  Bytes r = encoded(envelope::Recipient{255, {}});
  REQUIRE(r == Bytes{0, 0, 0, 255, 0, 0, 0, 0});
  CHECK(decoded<envelope::Recipient>(r));
  for (std::size_t i : {0u, 1u, 2u}) {
    Bytes big = r;
    big[i] = 1;
    CHECK_FALSE(decoded<envelope::Recipient>(big));
  }
}

TEST_CASE("a list or map count beyond the bytes left is refused, before anything is allocated") {
  Bytes b = encoded(req::KeyUntag{"k", {"a"}});  // lp("k") ‖ count ‖ lp("a")
  REQUIRE(b.size() == 5 + 4 + 5);
  for (std::uint32_t n : {2u, 6u, 0x7fffffffu, 0xffffffffu}) {
    put_u32(b, 5, n);
    CHECK_FALSE(decoded<req::KeyUntag>(b));
  }
  Bytes d = encoded(req::Decrypt{{}, {}, {}, {}, {}});  // lp("") ‖ count
  for (std::uint32_t n : {1u, 0xffffffffu}) {
    put_u32(d, 4, n);
    CHECK_FALSE(decoded<req::Decrypt>(d));
  }
  Bytes s = encoded(Bytes{1, 2});  // a byte string longer than what is left
  put_u32(s, 0, 3);
  CHECK_FALSE(decoded<Bytes>(s));
}

TEST_CASE("a map with a key twice, or keys out of order, is refused") {
  auto decrypt_with = [](const std::vector<std::pair<std::string, std::string>>& pairs) {
    Bytes b{0, 0, 0, 0};  // no blob
    const std::size_t at = b.size();
    b.resize(at + 4);
    put_u32(b, at, static_cast<std::uint32_t>(pairs.size()));
    for (const auto& [k, v] : pairs) {
      append_lp(b, k);
      append_lp(b, v);
    }
    b.insert(b.end(), {0, 0, 0, 0, 0, 0});  // algorithm, no key, no version
    return decoded<req::Decrypt>(b);
  };
  CHECK(decrypt_with({{"a", "1"}, {"b", "2"}}));
  CHECK(decrypt_with({{"", ""}, {"\x7f", "2"}, {"\x80", "3"}}));  // bytewise, as unsigned bytes
  CHECK_FALSE(decrypt_with({{"a", "1"}, {"a", "2"}}));
  CHECK_FALSE(decrypt_with({{"a", "1"}, {"a", "1"}}));
  CHECK_FALSE(decrypt_with({{"b", "2"}, {"a", "1"}}));
  CHECK_FALSE(decrypt_with({{"\x80", "2"}, {"\x7f", "1"}}));
}

// ---- request and reply heads ----

TEST_CASE("op numbers are distinct, and none is one of the agent's own") {
  std::vector<std::uint16_t> ops;
  collect_ops(CallRequests{}, ops);
  collect_ops(SessionRequests{}, ops);
  CHECK(ops.size() == 53);
  CHECK(std::set<std::uint16_t>(ops.begin(), ops.end()).size() == ops.size());
  for (std::uint16_t op : ops) {
    CHECK(op != kOpAgentStatus);
    CHECK(op != kOpAgentStop);
    CHECK(op != kOpAgentHello);
  }
}

TEST_CASE("a request frame is its length, magic, version, op, vault and fields") {
  const req::AliasDelete r{"alias/x"};
  const wire::Writer f = request_frame(static_cast<std::uint16_t>(req::AliasDelete::op), "/v.db",
                                       [&](wire::Writer& w) { wire::encode(w, r); });
  const Bytes p = payload_of(f);
  Bytes expect{'K', 'M', 'A', 'Q', 7, 0, 33, 0, 0, 0, 5, '/', 'v', '.', 'd', 'b'};
  append_lp(expect, "alias/x");
  CHECK(p == expect);

  wire::Reader in(p);
  const std::optional<RequestHead> head = parse_request_head(in);
  REQUIRE(head);
  CHECK(head->op == 33);
  CHECK(head->vault == "/v.db");
  const auto back = wire::decode<req::AliasDelete>(in);
  REQUIRE(back);
  CHECK(back->alias == "alias/x");
}

TEST_CASE("every request type travels in a request payload and parses back from it") {
  auto one = [](const auto& sample_value) {
    using R = std::remove_cvref_t<decltype(sample_value)>;
    const Bytes p = request_payload("/home/alice/vault.db", sample_value);
    wire::Reader in(p);
    const auto head = parse_request_head(in);
    REQUIRE(head);
    CHECK(head->op == static_cast<std::uint16_t>(R::op));
    CHECK(head->vault == "/home/alice/vault.db");
    const auto back = wire::decode<R>(in);
    REQUIRE(back);
    CHECK(eq(*back, sample_value));
  };
  [&]<class... R>(RequestList<R...>) { (one(sample<R>()), ...); }(CallRequests{});
  [&]<class... R>(RequestList<R...>) { (one(sample<R>()), ...); }(SessionRequests{});
  // The agent's own operations carry no vault and no fields.
  const wire::Writer stop = request_frame(kOpAgentStop, {}, [](wire::Writer&) {});
  CHECK(payload_of(stop) == Bytes{'K', 'M', 'A', 'Q', 7, 0xf0, 0x01, 0, 0, 0, 0});
}

TEST_CASE("a request head with another magic or version, or cut short, is refused") {
  const Bytes good = request_payload("/v", req::AliasList{});
  REQUIRE(good.size() == 4 + 1 + 2 + 4 + 2);
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    wire::Reader in(ByteView(good.data(), n));
    CHECK_FALSE(parse_request_head(in));
  }
  for (std::size_t i : {0u, 1u, 2u, 3u}) {
    Bytes b = good;
    b[i] ^= 0x20;
    wire::Reader in(b);
    CHECK_FALSE(parse_request_head(in));
  }
  for (std::uint8_t v : {0, 1, 2, 3, 4, 5, 6, 8, 0xff}) {
    Bytes b = good;
    b[4] = v;
    wire::Reader in(b);
    CHECK_FALSE(parse_request_head(in));
  }
  Bytes reply = payload_of(local_frame());  // a reply is not a request
  wire::Reader in(reply);
  CHECK_FALSE(parse_request_head(in));
  Bytes long_vault = good;  // the vault's length beyond the payload
  put_u32(long_vault, 7, 3);
  wire::Reader lv(long_vault);
  CHECK_FALSE(parse_request_head(lv));
}

TEST_CASE("an ok reply carries the response's fields after its head") {
  const keys::KeyInfo info = key_info();
  const Bytes p = payload_of(reply_frame([&](wire::Writer& w) { wire::encode(w, info); }));
  REQUIRE(p.size() > 6);
  CHECK(Bytes(p.begin(), p.begin() + 6) == Bytes{'K', 'M', 'A', 'R', 7, 0});
  wire::Reader in(p);
  CHECK(parse_reply_head(in) == agent::Status::ok);
  const auto back = wire::decode<keys::KeyInfo>(in);
  REQUIRE(back);
  CHECK(eq(*back, info));

  const Bytes empty = payload_of(reply_frame([](wire::Writer&) {}));
  CHECK(empty == Bytes{'K', 'M', 'A', 'R', 7, 0});
  wire::Reader e(empty);
  CHECK(parse_reply_head(e) == agent::Status::ok);
  CHECK(e.at_end());
}

TEST_CASE("a local reply is its head alone") {
  const Bytes p = payload_of(local_frame());
  CHECK(p == Bytes{'K', 'M', 'A', 'R', 7, 2});
  wire::Reader in(p);
  CHECK(parse_reply_head(in) == agent::Status::local);
  CHECK(in.at_end());
}

TEST_CASE("an error reply is thrown as the error it carries: code, message and hint") {
  for (int c = 1; c <= 6; ++c) {
    const Error e(static_cast<Code>(c), "key alias/x is disabled", "enable it: key enable");
    const Bytes p = payload_of(error_frame(e));
    Bytes expect{'K', 'M', 'A', 'R', 7, 1, static_cast<std::uint8_t>(c)};
    append_lp(expect, e.what());
    append_lp(expect, e.hint());
    CHECK(p == expect);
    wire::Reader in(p);
    try {
      parse_reply_head(in);
      FAIL("no error thrown");
    } catch (const Error& got) {
      CHECK(got.code() == static_cast<Code>(c));
      CHECK(std::string(got.what()) == e.what());
      CHECK(got.hint() == e.hint());
    }
  }
  const Bytes no_hint = payload_of(error_frame(Error(Code::refused, "")));
  wire::Reader in(no_hint);
  try {
    parse_reply_head(in);
    FAIL("no error thrown");
  } catch (const Error& got) {
    CHECK(got.code() == Code::refused);
    CHECK(std::string(got.what()).empty());
    CHECK(got.hint().empty());
  }
}

TEST_CASE("a reply that is not one of this version is Code::unavailable") {
  auto unavailable = [](const Bytes& p) {
    wire::Reader in(p);
    try {
      parse_reply_head(in);
    } catch (const Error& e) {
      return e.code() == Code::unavailable &&
             std::string(e.what()).find("could not be read") != std::string::npos;
    }
    return false;
  };
  const Bytes ok = payload_of(reply_frame([](wire::Writer&) {}));
  for (std::size_t i : {0u, 1u, 2u, 3u}) {
    Bytes b = ok;
    b[i] ^= 0x20;
    CHECK(unavailable(b));
  }
  for (std::uint8_t v : {0, 1, 2, 3, 4, 5, 6, 8, 0xff}) {
    Bytes b = ok;
    b[4] = v;
    CHECK(unavailable(b));
  }
  for (std::uint8_t s : {3, 4, 0xff}) {
    Bytes b = ok;
    b[5] = s;
    CHECK(unavailable(b));
  }
  for (std::size_t n = 0; n < ok.size(); ++n) CHECK(unavailable(Bytes(ok.begin(), ok.begin() + n)));
  CHECK(unavailable(request_payload("/v", req::AliasList{})));  // a request is not a reply
  const Bytes err = payload_of(error_frame(Error(Code::refused, "m", "h")));
  for (std::uint8_t c : {0, 7, 0xff}) {
    Bytes b = err;
    b[6] = c;
    CHECK(unavailable(b));
  }
  for (std::size_t n = 6; n < err.size(); ++n) {
    CAPTURE(n);
    CHECK(unavailable(Bytes(err.begin(), err.begin() + n)));
  }
}
