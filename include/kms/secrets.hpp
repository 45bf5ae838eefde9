// Secrets: named, versioned values (passwords, tokens, JSON credentials) kept in the vault, each
// version encrypted under a vault key and stored as a sealed record. Stages as in AWS Secrets
// Manager: `current`, `previous`, and `pending` while a rotation is in progress. Rotation runs a
// hook in four steps (create, set, test, finish); see README "Secrets" for the protocol.
// This header is what a request gives and the vault answers; the secret store and the rotation
// hooks are internal (src/secrets/secret_store.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/records.hpp"
#include "kms/secure.hpp"
#include "kms/vocab.hpp"

namespace kms::secrets {

inline constexpr std::string_view kDefaultKeyAlias = "alias/kmsctl/secrets";
inline constexpr std::string_view kVersionsTable = "secret_versions";
inline constexpr std::int64_t kMaxVersions = 100;
inline constexpr std::size_t kMaxValueSize = 65536;
inline constexpr std::int64_t kMinRecoveryDays = 7, kMaxRecoveryDays = 30;
inline constexpr std::int64_t kMinRotationDays = 1, kMaxRotationDays = 365;
inline constexpr std::int64_t kMinGenLength = 4, kMaxGenLength = 4096;

// How kmsctl generates a value: `length` characters drawn uniformly from the charset
// (alnum | alnum-symbols | hex | base64) minus the `exclude` characters.
struct Generator {
  std::int64_t length = 32;
  std::string charset = "alnum";
  std::string exclude;
};
std::string alphabet(const Generator& g);  // Code::usage for an unknown or empty alphabet
SecureBytes generate(const Generator& g);
// A new value for a rotation: a JSON object with a string "password" gets a new password and
// keeps its other fields; any other value is replaced by a generated one.
SecureBytes generate_like(const Generator& g, ByteView current);

// 1-256 of A-Z a-z 0-9 / _ + = . @ - (Code::usage otherwise).
void check_name(std::string_view name);

struct CreateSpec {
  std::string name;
  std::optional<std::string> key;  // key id or alias; none: kDefaultKeyAlias, made on first use
  std::string description;
  std::vector<std::pair<std::string, std::string>> tags;
  std::optional<std::int64_t> rotation_days;
  std::optional<std::string> rotation_command;
  Generator generator;
};

// A change of a secret's rotation settings (`secret set-rotation`); what is not set is kept.
struct RotationChange {
  bool set_period = false;
  std::optional<std::int64_t> period_days;  // with set_period: none turns automatic rotation off
  bool set_command = false;
  std::optional<std::string> command;  // with set_command: none drops the hook (kmsctl generates)
};

struct SecretInfo {
  SecretMetadata secret;
  std::vector<std::string> key_aliases;
  std::vector<SecretVersionMetadata> versions;
  std::vector<std::pair<std::string, std::string>> tags;
  std::optional<std::string> next_rotation;
};

// A read for `kmsctl exec`: the variable the value goes to and the command's name, both named
// in the read's audit record (never the value).
struct ExecUse {
  std::string env, command;
};

struct Value {
  SecureBytes value;
  std::int64_t version = 0;
  std::optional<SecretStage> stage;
};

}  // namespace kms::secrets

namespace kms {

// How a secret's value is given: bytes, or generated with the secret's generator.
struct SecretInput {
  std::optional<SecureBytes> value;  // none: generate
  secrets::Generator generator;
};

struct SecretRotation {
  std::string name;
  std::int64_t version = 0;           // the new current version
  std::int64_t previous_version = 0;  // now previous
  bool resumed = false;               // a pending version from an earlier attempt was finished
  std::vector<std::string> steps;     // the steps run, in order
};

}  // namespace kms
