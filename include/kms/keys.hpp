// Keys: symmetric keys with versions, states, aliases, tags and rotation. What a request gives
// to create one, what the vault describes, and the checks a front end shares with the library.
// The key store itself is internal (src/keys/key_store.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/clock.hpp"
#include "kms/records.hpp"
#include "kms/secure.hpp"
#include "kms/vocab.hpp"

namespace kms::keys {

inline constexpr std::string_view kAliasPrefix = "alias/";
inline constexpr std::int64_t kMinRotationDays = 7, kMaxRotationDays = 730;
inline constexpr std::int64_t kMinPendingDays = 7, kMaxPendingDays = 30;
inline constexpr std::size_t kMaxEncryptPlaintext = 4096;
inline constexpr std::int64_t kMaxListLimit = 1000;   // keys in one page of `key list`
inline constexpr std::size_t kMaxRandomBytes = 1024;  // bytes one `random` returns

struct CreateSpec {
  KeySpec spec = KeySpec::aes_256;
  std::string description;
  std::optional<std::string> alias;
  std::vector<std::pair<std::string, std::string>> tags;
  std::optional<std::int64_t> rotation_days;
  Protection protection = Protection::software;
  std::optional<KeyUsage> usage;  // none: the spec's default usage
  // external: no material until `key import` (state PendingImport); software protection only.
  Origin origin = Origin::kms;
};

// How long the parameters of `key import-params` serve (as AWS KMS).
inline constexpr std::int64_t kImportParamsHours = 24;
// The sizes of HMAC key material `key import` takes (RFC 2104 allows any; fewer than 16 bytes
// is too weak, more than the hash's block size is hashed down by HMAC).
inline constexpr std::size_t kMinImportedHmacKey = 16, kMaxImportedHmacKey = 128;

// What `key import-params` gives: the public key to wrap the material for (RSA-3072,
// SubjectPublicKeyInfo DER) and the import token that names these parameters (docs/FORMAT.md
// §12.5), both good until `expires`.
struct ImportParams {
  std::string key_id;
  WrappingAlgorithm wrapping_algorithm = WrappingAlgorithm::rsaes_oaep_sha_256;
  Bytes public_key;
  Bytes import_token;
  std::string expires;
};

struct KeyInfo {
  KeyMetadata key;
  std::vector<std::string> aliases;
  std::vector<KeyVersionMetadata> versions;
  std::vector<std::pair<std::string, std::string>> tags;
  std::optional<std::string> next_rotation;
};

struct Decrypted {
  SecureBytes plaintext;
  std::string key_id;
  std::uint32_t key_version = 0;
};

// The public key of an asymmetric key's version (SubjectPublicKeyInfo DER: not secret).
struct PublicKey {
  std::string key_id;
  std::int64_t key_version = 0;
  KeySpec spec = KeySpec::aes_256;
  KeyUsage usage = KeyUsage::encrypt;
  Bytes spki;
};

// A signature or a MAC, and the key version that made it.
struct Signature {
  std::string key_id;
  std::int64_t key_version = 0;
  Bytes value;
};

// Whether a signature or MAC verified, and under which key version (0 when none).
struct Verified {
  std::string key_id;
  std::int64_t key_version = 0;
  bool valid = false;
};

// The longest message `mac` and `verify-mac` take (the whole message crosses an agent's socket).
inline constexpr std::size_t kMaxMacMessage = 64 * 1024;

// Validation shared by the CLI and the library (Code::usage with a hint on failure).
void check_alias_name(std::string_view alias);
std::int64_t parse_days(std::string_view text, std::int64_t min, std::int64_t max,
                        std::string_view what);  // "90d" or "90"
// `key import --expires`: a duration (30d, 12h), a date or an RFC 3339 time, after `now` and at
// most ten years away, as RFC 3339 (Code::usage otherwise).
std::string parse_material_expiry(const std::string& text, TimePoint now);
// The same range for a number of days a request gives (Code::usage outside min..max).
void check_days(std::int64_t days, std::int64_t min, std::int64_t max, std::string_view what);

}  // namespace kms::keys

namespace kms {

struct KeyPage {
  std::vector<keys::KeyInfo> keys;
  std::optional<std::string> next;  // pass as `after` for the next page
};

struct DataKey {
  std::string key_id;
  std::uint32_t key_version = 0;
  SecureBytes plaintext;
  Bytes ciphertext_blob;
};

}  // namespace kms
