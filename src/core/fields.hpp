// The fields of every request and response, in wire order (docs/FORMAT.md §13.3): one
// `fields(v, x)` per type, in the type's own namespace, for wire::Encoder and wire::Decoder.
// A field added to a type goes at its end here, and the protocol version goes up.
#pragma once

#include "core/wire.hpp"
#include "kms/actions.hpp"
#include "kms/caller.hpp"
#include "kms/error.hpp"
#include "kms/requests.hpp"
#include "kms/vocab.hpp"

namespace kms {

inline bool enum_valid(KeyState, std::uint8_t v) { return v < key_states().size(); }
inline bool enum_valid(Protection, std::uint8_t v) { return v < protections().size(); }
inline bool enum_valid(KeySpec, std::uint8_t v) { return v < key_specs().size(); }
inline bool enum_valid(KeyUsage, std::uint8_t v) { return v < key_usages().size(); }
inline bool enum_valid(SigningAlgorithm, std::uint8_t v) { return v < signing_algorithms().size(); }
inline bool enum_valid(EncryptionAlgorithm, std::uint8_t v) { return v <= 2; }
inline bool enum_valid(MacAlgorithm, std::uint8_t v) { return v <= 1; }
inline bool enum_valid(Origin, std::uint8_t v) { return v < origins().size(); }
inline bool enum_valid(WrappingAlgorithm, std::uint8_t v) {
  return v < wrapping_algorithms().size();
}
inline bool enum_valid(SecretStage, std::uint8_t v) { return v < secret_stages().size(); }
inline bool enum_valid(RotationStatus, std::uint8_t v) { return v < rotation_statuses().size(); }
inline bool enum_valid(Action, std::uint8_t v) { return v < actions().size(); }
inline bool enum_valid(GrantState, std::uint8_t v) { return v <= 2; }
inline bool enum_valid(Code, std::uint8_t v) { return v >= 1 && v <= 6; }

template <class V>
void fields(V&, Done&) {}
template <class V>
void fields(V& v, Status& s) {
  v(s.vault_path, s.vault_id, s.created, s.schema_version, s.module, s.token, s.private_token,
    s.root_key_generation, s.audit_records, s.counts, s.audit_head, s.root_key_seal);
}
template <class V>
void fields(V& v, KeyPage& p) {
  v(p.keys, p.next);
}
template <class V>
void fields(V& v, DataKey& d) {
  v(d.key_id, d.key_version, d.plaintext, d.ciphertext_blob);
}
template <class V>
void fields(V& v, FileResult& r) {
  v(r.name, r.keys, r.bytes, r.frames);
}
template <class V>
void fields(V& v, SecretInput& in) {
  v(in.value, in.generator);
}

template <class V>
void fields(V& v, TokenInfo& t) {
  v(t.slot, t.label, t.serial, t.manufacturer, t.model, t.initialized, t.user_pin_initialized,
    t.user_pin_locked, t.user_pin_final_try, t.min_pin_len, t.max_pin_len);
}
template <class V>
void fields(V& v, VaultCounts& c) {
  v(c.keys, c.keys_due_rotation, c.keys_due_deletion, c.secrets, c.secrets_due_rotation,
    c.secrets_due_deletion);
}
template <class V>
void fields(V& v, AuditHead& h) {
  v(h.seq, h.hash);
}
template <class V>
void fields(V& v, AuditRecord& r) {
  v(r.seq, r.time, r.principal, r.uid, r.action, r.resource, r.params, r.outcome, r.error_code,
    r.prev_hash, r.hash, r.mac, r.state);
}
template <class V>
void fields(V& v, AuditFilter& f) {
  v(f.since, f.until, f.action, f.resource, f.principal, f.outcome, f.after_seq, f.limit,
    f.newest_first, f.before_seq, f.grant);
}
template <class V>
void fields(V& v, GrantInfo& g) {
  v(g.id, g.key_id, g.grantee_uid, g.grantee, g.operations, g.context_equals, g.context_subset,
    g.retiring_uid, g.retiring_principal, g.name, g.created, g.created_by_uid, g.expires, g.state,
    g.ended);
}
template <class V>
void fields(V& v, GrantPage& p) {
  v(p.grants, p.next);
}
template <class V>
void fields(V& v, KeyPolicyInfo& p) {
  v(p.key_id, p.text, p.sha256, p.updated, p.updated_by_uid);
}
template <class V>
void fields(V& v, SecretPolicyInfo& p) {
  v(p.name, p.secret_id, p.text, p.sha256, p.updated, p.updated_by_uid);
}
template <class V>
void fields(V& v, KeyMetadata& k) {
  v(k.id, k.spec, k.usage, k.description, k.state, k.protection, k.created, k.rotation_period_days,
    k.last_rotated, k.deletion_date, k.primary_version, k.origin, k.material_expires);
}
template <class V>
void fields(V& v, KeyVersionMetadata& k) {
  v(k.key_id, k.version, k.created);
}
template <class V>
void fields(V& v, SecretMetadata& s) {
  v(s.id, s.name, s.key_id, s.description, s.created, s.updated, s.next_version, s.gen_length,
    s.gen_charset, s.gen_exclude, s.rotation_period_days, s.rotation_command, s.last_rotated,
    s.rotation_status, s.rotation_error, s.deletion_date);
}
template <class V>
void fields(V& v, SecretVersionMetadata& s) {
  v(s.secret_id, s.version, s.created, s.stage);
}

namespace audit {
template <class V>
void fields(V& v, Anchor& a) {
  v(a.seq, a.hash);
}
template <class V>
void fields(V& v, VerifyReport& r) {
  v(r.ok, r.records, r.first_bad_seq, r.problem, r.anchor, r.head, r.rows, r.state_recorded_at);
}
}  // namespace audit

namespace keys {
template <class V>
void fields(V& v, CreateSpec& s) {
  v(s.spec, s.description, s.alias, s.tags, s.rotation_days, s.protection, s.usage, s.origin);
}
template <class V>
void fields(V& v, ImportParams& p) {
  v(p.key_id, p.wrapping_algorithm, p.public_key, p.import_token, p.expires);
}
template <class V>
void fields(V& v, KeyInfo& k) {
  v(k.key, k.aliases, k.versions, k.tags, k.next_rotation);
}
template <class V>
void fields(V& v, Decrypted& d) {
  v(d.plaintext, d.key_id, d.key_version);
}
template <class V>
void fields(V& v, PublicKey& k) {
  v(k.key_id, k.key_version, k.spec, k.usage, k.spki);
}
template <class V>
void fields(V& v, Signature& s) {
  v(s.key_id, s.key_version, s.value);
}
template <class V>
void fields(V& v, Verified& x) {
  v(x.key_id, x.key_version, x.valid);
}
}  // namespace keys

namespace secrets {
template <class V>
void fields(V& v, Generator& g) {
  v(g.length, g.charset, g.exclude);
}
template <class V>
void fields(V& v, CreateSpec& s) {
  v(s.name, s.key, s.description, s.tags, s.rotation_days, s.rotation_command, s.generator);
}
template <class V>
void fields(V& v, RotationChange& c) {
  v(c.set_period, c.period_days, c.set_command, c.command);
}
template <class V>
void fields(V& v, SecretInfo& s) {
  v(s.secret, s.key_aliases, s.versions, s.tags, s.next_rotation);
}
template <class V>
void fields(V& v, ExecUse& e) {
  v(e.env, e.command);
}
template <class V>
void fields(V& v, Value& x) {
  v(x.value, x.version, x.stage);
}
}  // namespace secrets

namespace grants {
template <class V>
void fields(V& v, CreateSpec& s) {
  v(s.key, s.grantee, s.operations, s.context_equals, s.context_subset, s.retiring_principal,
    s.expires, s.name);
}
template <class V>
void fields(V& v, ListFilter& f) {
  v(f.key, f.grantee, f.all, f.after, f.limit);
}
}  // namespace grants

namespace envelope {
template <class V>
void fields(V& v, Recipient& r) {
  v(r.type, r.body);
}
template <class V>
void fields(V& v, Header& h) {
  v(h.version, h.suite, h.frame_size, h.salt, h.context, h.recipients, h.commitment, h.tag,
    h.encoded_size);
}
}  // namespace envelope

namespace req {
template <class V>
void fields(V&, Status&) {}
template <class V>
void fields(V& v, AuditList& r) {
  v(r.filter);
}
template <class V>
void fields(V&, AuditVerify&) {}
template <class V>
void fields(V& v, AuditExport& r) {
  v(r.dest, r.overwrite);
}
template <class V>
void fields(V& v, KeyCreate& r) {
  v(r.spec);
}
template <class V>
void fields(V& v, KeyList& r) {
  v(r.state, r.after, r.limit);
}
template <class V, Op O>
void fields(V& v, OnKey<O>& r) {
  v(r.key);
}
template <class V>
void fields(V& v, KeySetRotation& r) {
  v(r.key, r.days);
}
template <class V>
void fields(V& v, KeyScheduleDeletion& r) {
  v(r.key, r.pending_days);
}
template <class V>
void fields(V& v, KeyTag& r) {
  v(r.key, r.tags);
}
template <class V>
void fields(V& v, KeyUntag& r) {
  v(r.key, r.names);
}
template <class V>
void fields(V& v, KeyImportParams& r) {
  v(r.key, r.wrapping_algorithm);
}
template <class V>
void fields(V& v, KeyImport& r) {
  v(r.key, r.wrapped_material, r.import_token, r.expires);
}
template <class V>
void fields(V& v, AliasCreate& r) {
  v(r.alias, r.key);
}
template <class V>
void fields(V& v, AliasUpdate& r) {
  v(r.alias, r.key);
}
template <class V>
void fields(V& v, AliasDelete& r) {
  v(r.alias);
}
template <class V>
void fields(V&, AliasList&) {}
template <class V>
void fields(V& v, Encrypt& r) {
  v(r.key, r.plaintext, r.context, r.algorithm);
}
template <class V>
void fields(V& v, Decrypt& r) {
  v(r.blob, r.context, r.algorithm, r.key, r.key_version);
}
template <class V>
void fields(V& v, ReEncrypt& r) {
  v(r.blob, r.context, r.to_key, r.to_context);
}
template <class V>
void fields(V& v, GenerateDataKey& r) {
  v(r.key, r.bytes, r.context);
}
template <class V>
void fields(V& v, Random& r) {
  v(r.bytes);
}
template <class V>
void fields(V& v, GetPublicKey& r) {
  v(r.key, r.key_version);
}
template <class V>
void fields(V& v, Sign& r) {
  v(r.key, r.algorithm, r.input, r.is_digest);
}
template <class V>
void fields(V& v, Verify& r) {
  v(r.key, r.algorithm, r.input, r.is_digest, r.signature, r.key_version);
}
template <class V>
void fields(V& v, Mac& r) {
  v(r.key, r.message);
}
template <class V>
void fields(V& v, VerifyMac& r) {
  v(r.key, r.message, r.mac);
}
template <class V>
void fields(V& v, FileWrap& r) {
  v(r.name, r.keys, r.data_key, r.context);
}
template <class V>
void fields(V& v, FileWrap::Response& r) {
  v(r.recipients, r.keys);
}
template <class V>
void fields(V& v, FileUnwrap& r) {
  v(r.name, r.context, r.recipients);
}
template <class V>
void fields(V& v, FileUnwrap::Response& r) {
  v(r.data_key, r.keys);
}
template <class V>
void fields(V& v, FileEnd& r) {
  v(r.ok, r.bytes, r.frames, r.code, r.signal, r.message);
}
template <class V>
void fields(V& v, FileFailed& r) {
  v(r.action, r.name, r.code, r.signal);
}
template <class V>
void fields(V& v, FileRewrap& r) {
  v(r.name, r.header, r.to_key);
}
template <class V>
void fields(V& v, FileRewrap::Response& r) {
  v(r.header, r.result);
}
template <class V>
void fields(V& v, SecretCreate& r) {
  v(r.spec, r.input);
}
template <class V>
void fields(V& v, SecretPut& r) {
  v(r.name, r.input);
}
template <class V>
void fields(V& v, SecretGet& r) {
  v(r.name, r.stage, r.version, r.exec);
}
template <class V>
void fields(V&, SecretList&) {}
template <class V, Op O>
void fields(V& v, OnSecret<O>& r) {
  v(r.name);
}
template <class V>
void fields(V& v, SecretDelete& r) {
  v(r.name, r.days);
}
template <class V>
void fields(V& v, SecretSetRotation& r) {
  v(r.name, r.change);
}
template <class V>
void fields(V& v, KeySetPolicy& r) {
  v(r.key, r.text);
}
template <class V>
void fields(V& v, KeyGetPolicy& r) {
  v(r.key);
}
template <class V>
void fields(V& v, SecretSetPolicy& r) {
  v(r.name, r.text);
}
template <class V>
void fields(V& v, SecretGetPolicy& r) {
  v(r.name);
}
template <class V>
void fields(V& v, GrantCreate& r) {
  v(r.spec);
}
template <class V>
void fields(V& v, GrantList& r) {
  v(r.filter);
}
template <class V, Op O>
void fields(V& v, OnGrant<O>& r) {
  v(r.grant);
}
}  // namespace req

template <class... R>
struct RequestList {};
// Every request type a client may send, for the agent's dispatch and the fuzz target. FileWrap,
// FileUnwrap, FileRewrap and FileEnd are a file session's (FileOperations::session); the others
// are one call of kms::handle each.
using SessionRequests = RequestList<req::FileWrap, req::FileUnwrap, req::FileRewrap, req::FileEnd>;
using CallRequests =
    RequestList<req::Status, req::AuditList, req::AuditVerify, req::AuditExport, req::KeyCreate,
                req::KeyList, req::KeyDescribe, req::KeyEnable, req::KeyDisable, req::KeyRotate,
                req::KeyCancelDeletion, req::KeySetRotation, req::KeyScheduleDeletion, req::KeyTag,
                req::KeyUntag, req::AliasCreate, req::AliasUpdate, req::AliasDelete, req::AliasList,
                req::Encrypt, req::Decrypt, req::ReEncrypt, req::GenerateDataKey, req::Random,
                req::FileFailed, req::SecretCreate, req::SecretPut, req::SecretGet, req::SecretList,
                req::SecretDescribe, req::SecretVersions, req::SecretRestore, req::SecretDelete,
                req::SecretSetRotation, req::GrantCreate, req::GrantList, req::GrantRevoke,
                req::GrantRetire, req::KeySetPolicy, req::KeyGetPolicy, req::GetPublicKey,
                req::Sign, req::Verify, req::Mac, req::VerifyMac, req::SecretSetPolicy,
                req::SecretGetPolicy, req::KeyImportParams, req::KeyImport>;

}  // namespace kms
