// Every operation a vault serves, as a value: a request names what is asked, on what, with which
// context, and its Response type names the answer. The caller is not part of the request: it is
// who sends it, taken from the kernel (kms/caller.hpp). A front end builds a request, hands it to
// a vault (kms::handle, in this process) or to an agent (over its socket: docs/FORMAT.md §13),
// and renders the response. docs/ARCHITECTURE.md §2 shows the path and how to add one.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kms/audit.hpp"
#include "kms/context.hpp"
#include "kms/envelope.hpp"
#include "kms/grants.hpp"
#include "kms/key_policy.hpp"
#include "kms/keys.hpp"
#include "kms/secret_policy.hpp"
#include "kms/secrets.hpp"
#include "kms/secure.hpp"
#include "kms/service.hpp"

namespace kms {

// The operation a request asks for, as numbered on the wire (docs/FORMAT.md §13.4). Numbers
// are never reused.
enum class Op : std::uint16_t {
  status = 1,
  audit_list = 10,
  audit_verify = 11,
  audit_export = 12,
  key_create = 20,
  key_list = 21,
  key_describe = 22,
  key_enable = 23,
  key_disable = 24,
  key_rotate = 25,
  key_set_rotation = 26,
  key_schedule_deletion = 27,
  key_cancel_deletion = 28,
  key_tag = 29,
  key_untag = 30,
  alias_create = 31,
  alias_update = 32,
  alias_delete = 33,
  alias_list = 34,
  key_set_policy = 35,
  key_get_policy = 36,
  key_get_public_key = 37,
  key_import_params = 38,
  key_import = 39,
  encrypt = 40,
  decrypt = 41,
  re_encrypt = 42,
  data_key_generate = 43,
  random = 44,
  sign = 45,
  verify = 46,
  mac = 47,
  verify_mac = 48,
  file_wrap = 50,
  file_unwrap = 51,
  file_end = 52,
  file_failed = 53,
  file_rewrap = 54,
  secret_create = 60,
  secret_put = 61,
  secret_get = 62,
  secret_list = 63,
  secret_describe = 64,
  secret_versions = 65,
  secret_delete = 66,
  secret_restore = 67,
  secret_set_rotation = 68,
  // Run in the process that opened the vault, never by an agent (a rotation hook would get the
  // agent's environment; vault administration needs the token in the caller's hands).
  secret_rotate = 69,
  secret_set_policy = 70,
  secret_get_policy = 71,
  maintain = 80,
  vault_backup = 90,
  vault_rekey = 91,
  vault_check_token = 92,
  vault_change_pin = 93,
  vault_migrate = 94,
  grant_create = 100,
  grant_list = 101,
  grant_revoke = 102,
  grant_retire = 103,
};

// An answer with nothing in it.
struct Done {};

namespace req {

struct Status {
  static constexpr Op op = Op::status;
  using Response = kms::Status;
};

// ---- audit ----
struct AuditList {
  static constexpr Op op = Op::audit_list;
  using Response = std::vector<AuditRecord>;
  AuditFilter filter;
};
struct AuditVerify {
  static constexpr Op op = Op::audit_verify;
  using Response = audit::VerifyReport;
};
struct AuditExport {
  static constexpr Op op = Op::audit_export;
  using Response = std::int64_t;  // records written
  std::string dest;               // absolute
  bool overwrite = false;
};

// ---- keys; KEY is a key id or alias/NAME ----
struct KeyCreate {
  static constexpr Op op = Op::key_create;
  using Response = keys::KeyInfo;
  keys::CreateSpec spec;
};
struct KeyList {
  static constexpr Op op = Op::key_list;
  using Response = KeyPage;
  std::optional<KeyState> state;
  std::optional<std::string> after;
  std::int64_t limit = 100;
};
// describe, enable, disable, rotate, cancel-deletion: one KEY and nothing else.
template <Op O>
struct OnKey {
  static constexpr Op op = O;
  using Response = keys::KeyInfo;
  std::string key;
};
using KeyDescribe = OnKey<Op::key_describe>;
using KeyEnable = OnKey<Op::key_enable>;
using KeyDisable = OnKey<Op::key_disable>;
using KeyRotate = OnKey<Op::key_rotate>;
using KeyCancelDeletion = OnKey<Op::key_cancel_deletion>;
struct KeySetRotation {
  static constexpr Op op = Op::key_set_rotation;
  using Response = keys::KeyInfo;
  std::string key;
  std::optional<std::int64_t> days;  // none: automatic rotation off
};
struct KeyScheduleDeletion {
  static constexpr Op op = Op::key_schedule_deletion;
  using Response = keys::KeyInfo;
  std::string key;
  std::int64_t pending_days = 30;
};
struct KeyTag {
  static constexpr Op op = Op::key_tag;
  using Response = keys::KeyInfo;
  std::string key;
  std::vector<std::pair<std::string, std::string>> tags;
};
struct KeyUntag {
  static constexpr Op op = Op::key_untag;
  using Response = keys::KeyInfo;
  std::string key;
  std::vector<std::string> names;
};
// A key's own policy: `text` a policy file (TOML or JSON); none removes the key's policy.
struct KeySetPolicy {
  static constexpr Op op = Op::key_set_policy;
  using Response = KeyPolicyInfo;
  std::string key;
  std::optional<std::string> text;
};
struct KeyGetPolicy {
  static constexpr Op op = Op::key_get_policy;
  using Response = KeyPolicyInfo;
  std::string key;
};
// Bring your own key (docs/KEYS.md): the parameters to wrap material for KEY (origin external),
// then the import of the wrapped material with the token those parameters came with.
struct KeyImportParams {
  static constexpr Op op = Op::key_import_params;
  using Response = keys::ImportParams;
  std::string key;
  WrappingAlgorithm wrapping_algorithm = WrappingAlgorithm::rsaes_oaep_sha_256;
};
struct KeyImport {
  static constexpr Op op = Op::key_import;
  using Response = keys::KeyInfo;
  std::string key;
  Bytes wrapped_material;
  Bytes import_token;
  std::optional<std::string> expires;  // RFC 3339; none: the material never expires
};
struct AliasCreate {
  static constexpr Op op = Op::alias_create;
  using Response = Done;
  std::string alias, key;
};
struct AliasUpdate {
  static constexpr Op op = Op::alias_update;
  using Response = Done;
  std::string alias, key;
};
struct AliasDelete {
  static constexpr Op op = Op::alias_delete;
  using Response = Done;
  std::string alias;
};
struct AliasList {
  static constexpr Op op = Op::alias_list;
  using Response = std::vector<std::pair<std::string, std::string>>;  // alias, key id
};

// ---- cryptography with keys ----
struct Encrypt {
  static constexpr Op op = Op::encrypt;
  using Response = Bytes;  // a ciphertext blob, or a public-key ciphertext
  std::string key;
  SecureBytes plaintext;
  Context context;
  EncryptionAlgorithm algorithm = EncryptionAlgorithm::symmetric_default;
};
// A ciphertext blob names its key; a public-key ciphertext (algorithm other than
// symmetric_default) is decrypted with `key`, its `key_version` or each version in turn.
struct Decrypt {
  static constexpr Op op = Op::decrypt;
  using Response = keys::Decrypted;
  Bytes blob;
  Context context;
  EncryptionAlgorithm algorithm = EncryptionAlgorithm::symmetric_default;
  std::string key;
  std::optional<std::int64_t> key_version;
};
struct ReEncrypt {
  static constexpr Op op = Op::re_encrypt;
  using Response = Bytes;
  Bytes blob;
  Context context;
  std::string to_key;
  Context to_context;
};
struct GenerateDataKey {
  static constexpr Op op = Op::data_key_generate;
  using Response = DataKey;
  std::string key;
  std::uint32_t bytes = 32;
  Context context;
};
struct Random {
  static constexpr Op op = Op::random;
  using Response = Bytes;
  std::uint32_t bytes = 32;
};
struct GetPublicKey {
  static constexpr Op op = Op::key_get_public_key;
  using Response = keys::PublicKey;
  std::string key;
  std::optional<std::int64_t> key_version;  // none: the primary version
};
// A signature of `input`: the message itself, or (`is_digest`) the digest the algorithm takes.
struct Sign {
  static constexpr Op op = Op::sign;
  using Response = keys::Signature;
  std::string key;
  SigningAlgorithm algorithm = SigningAlgorithm::ecdsa_sha_256;
  SecureBytes input;
  bool is_digest = false;
};
struct Verify {
  static constexpr Op op = Op::verify;
  using Response = keys::Verified;
  std::string key;
  SigningAlgorithm algorithm = SigningAlgorithm::ecdsa_sha_256;
  SecureBytes input;
  bool is_digest = false;
  Bytes signature;
  std::optional<std::int64_t> key_version;  // none: each version in turn
};
struct Mac {
  static constexpr Op op = Op::mac;
  using Response = keys::Signature;
  std::string key;
  SecureBytes message;
};
struct VerifyMac {
  static constexpr Op op = Op::verify_mac;
  using Response = keys::Verified;
  std::string key;
  SecureBytes message;
  Bytes mac;
};

// ---- files: only data keys travel; the bulk encryption runs where the file is ----
// A file encrypt or decrypt is a session of its own (FileOperations::session): the first request
// wraps or unwraps the data key and records the key use as `started`; FileEnd then records its
// end. A session that ends without FileEnd (its client went away) is recorded as interrupted.
struct FileWrap {
  static constexpr Op op = Op::file_wrap;
  struct Response {
    std::vector<envelope::Recipient> recipients;
    std::vector<std::pair<std::string, std::int64_t>> keys;  // key id, version used
  };
  std::string name;  // the input, as the audit record names it
  std::vector<std::string> keys;
  SecureBytes data_key;
  Context context;
};
struct FileUnwrap {
  static constexpr Op op = Op::file_unwrap;
  struct Response {
    SecureBytes data_key;
    std::vector<std::pair<std::string, std::int64_t>> keys;  // the key id, version that opened it
  };
  std::string name;
  Context context;
  std::vector<envelope::Recipient> recipients;
};
struct FileEnd {
  static constexpr Op op = Op::file_end;
  using Response = Done;
  bool ok = false;
  std::uint64_t bytes = 0, frames = 0;  // ok
  Code code = Code::failed;             // not ok: the failure
  std::int32_t signal = 0;              // not ok: the caught signal that stopped it, if any
  std::string message;
};
// A file decrypt that failed before any key was used (a damaged header, another context).
struct FileFailed {
  static constexpr Op op = Op::file_failed;
  using Response = Done;
  Action action = Action::file_decrypt;
  std::string name;
  Code code = Code::failed;
  std::int32_t signal = 0;
};
struct FileRewrap {
  static constexpr Op op = Op::file_rewrap;
  struct Response {
    Bytes header;  // the new header, to replace the old one
    FileResult result;
  };
  std::string name;  // the file's path, as the audit record names it
  envelope::Header header;
  std::optional<std::string> to_key;
};

// ---- secrets ----
struct SecretCreate {
  static constexpr Op op = Op::secret_create;
  using Response = secrets::SecretInfo;
  secrets::CreateSpec spec;
  SecretInput input;
};
struct SecretPut {
  static constexpr Op op = Op::secret_put;
  using Response = secrets::SecretInfo;
  std::string name;
  SecretInput input;
};
struct SecretGet {
  static constexpr Op op = Op::secret_get;
  using Response = secrets::Value;
  std::string name;
  std::optional<SecretStage> stage;
  std::optional<std::int64_t> version;
  std::optional<secrets::ExecUse> exec;  // a read for `kmsctl exec`
};
struct SecretList {
  static constexpr Op op = Op::secret_list;
  using Response = std::vector<secrets::SecretInfo>;
};
template <Op O>
struct OnSecret {
  static constexpr Op op = O;
  using Response = secrets::SecretInfo;
  std::string name;
};
using SecretDescribe = OnSecret<Op::secret_describe>;
using SecretVersions = OnSecret<Op::secret_versions>;
using SecretRestore = OnSecret<Op::secret_restore>;
struct SecretDelete {
  static constexpr Op op = Op::secret_delete;
  using Response = secrets::SecretInfo;
  std::string name;
  std::optional<std::int64_t> days;  // none: purge now
};
struct SecretSetRotation {
  static constexpr Op op = Op::secret_set_rotation;
  using Response = secrets::SecretInfo;
  std::string name;
  secrets::RotationChange change;
};
// A secret's own policy: `text` a policy file (TOML or JSON); none removes the secret's policy.
struct SecretSetPolicy {
  static constexpr Op op = Op::secret_set_policy;
  using Response = SecretPolicyInfo;
  std::string name;
  std::optional<std::string> text;
};
struct SecretGetPolicy {
  static constexpr Op op = Op::secret_get_policy;
  using Response = SecretPolicyInfo;
  std::string name;
};

// ---- grants; GRANT is a grant id ----
struct GrantCreate {
  static constexpr Op op = Op::grant_create;
  using Response = GrantInfo;
  grants::CreateSpec spec;
};
struct GrantList {
  static constexpr Op op = Op::grant_list;
  using Response = GrantPage;
  grants::ListFilter filter;
};
template <Op O>
struct OnGrant {
  static constexpr Op op = O;
  using Response = GrantInfo;
  std::string grant;
};
using GrantRevoke = OnGrant<Op::grant_revoke>;
using GrantRetire = OnGrant<Op::grant_retire>;

// ---- run where the vault is opened, never by an agent ----
struct SecretRotate {
  static constexpr Op op = Op::secret_rotate;
  using Response = SecretRotation;
  std::string name;
};
struct Maintain {
  static constexpr Op op = Op::maintain;
  using Response = MaintainReport;
  bool dry_run = false;
};
struct VaultBackup {
  static constexpr Op op = Op::vault_backup;
  using Response = Done;
  std::string dest;
  bool overwrite = false;
};
// Copies a vault file, every row and record as it is, into a new PostgreSQL database, and
// verifies the copy's chain and rows against the token (docs/SECURITY.md §18).
struct VaultMigrate {
  static constexpr Op op = Op::vault_migrate;
  using Response = MigrateReport;
  std::string to;  // a libpq connection string
};
struct VaultRekey {
  static constexpr Op op = Op::vault_rekey;
  using Response = std::int64_t;  // the root key generation now in use
};
struct VaultCheckToken {
  static constexpr Op op = Op::vault_check_token;
  using Response = TokenCheck;
  bool remove = false;
};
struct VaultChangePin {
  static constexpr Op op = Op::vault_change_pin;
  using Response = Done;
  SecureBytes old_pin, new_pin;
};

}  // namespace req

// Runs one request on an open vault for its current caller (Service::serve_client): authorise,
// do, audit, in one transaction; returns the response. Errors are kms::Error.
template <class R>
typename R::Response handle(Service& vault, const R& request);

}  // namespace kms
