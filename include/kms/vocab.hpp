// The closed vocabularies of keys and secrets: a key's state and protection level, a secret
// version's stage and a secret's rotation status. Each is an enum with one name table
// (src/base/vocab.cpp); the names are what the vault's rows store (and MAC), what the CLI prints
// and parses, and what audit params and docs spell. Code compares the enums, never the names.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace kms {

enum class KeyState : std::uint8_t { enabled, disabled, pending_deletion, pending_import };
struct KeyStateInfo {
  KeyState state;
  std::string_view name;     // "PendingDeletion": as rows, output and audit params spell it
  std::string_view option;   // "pending-deletion": as `key list --state` spells it
  std::string_view summary;  // one line for the docs
};
std::span<const KeyStateInfo> key_states() noexcept;  // in the enum's order
std::string_view key_state_name(KeyState s) noexcept;
std::optional<KeyState> parse_key_state(std::string_view name) noexcept;
std::optional<KeyState> parse_key_state_option(std::string_view option) noexcept;

enum class Protection : std::uint8_t { software, hsm };
struct ProtectionInfo {
  Protection protection;
  std::string_view name;  // "software", "hsm"
  std::string_view summary;
};
std::span<const ProtectionInfo> protections() noexcept;
std::string_view protection_name(Protection p) noexcept;
std::optional<Protection> parse_protection(std::string_view name) noexcept;

// Where a key's material comes from: made by the vault (kms), or imported (external: `key create
// --origin external`, then `key import-params` and `key import`; docs/KEYS.md, "Bring your own
// key").
enum class Origin : std::uint8_t { kms, external };
struct OriginInfo {
  Origin origin;
  std::string_view name;  // "kms", "external"
  std::string_view summary;
};
std::span<const OriginInfo> origins() noexcept;
std::string_view origin_name(Origin o) noexcept;
std::optional<Origin> parse_origin(std::string_view name) noexcept;

// How key material to import is wrapped for the vault (AWS KMS's names): RSA-OAEP with SHA-256
// of the material itself, or a fresh AES-256 key RSA-OAEP-wrapped followed by the material
// wrapped by it with AES key wrap with padding (RFC 5649).
enum class WrappingAlgorithm : std::uint8_t { rsaes_oaep_sha_256, rsa_aes_key_wrap_sha_256 };
struct WrappingAlgorithmInfo {
  WrappingAlgorithm algorithm;
  std::string_view name;  // "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256"
  std::string_view summary;
};
std::span<const WrappingAlgorithmInfo> wrapping_algorithms() noexcept;
std::string_view wrapping_algorithm_name(WrappingAlgorithm a) noexcept;
std::optional<WrappingAlgorithm> parse_wrapping_algorithm(std::string_view name) noexcept;

enum class SecretStage : std::uint8_t { current, previous, pending };
struct SecretStageInfo {
  SecretStage stage;
  std::string_view name;  // "current", "previous", "pending"
  std::string_view summary;
};
std::span<const SecretStageInfo> secret_stages() noexcept;
std::string_view secret_stage_name(SecretStage s) noexcept;
std::optional<SecretStage> parse_secret_stage(std::string_view name) noexcept;

enum class RotationStatus : std::uint8_t { never, in_progress, succeeded, failed };
struct RotationStatusInfo {
  RotationStatus status;
  std::string_view name;  // "never", "in_progress", "succeeded", "failed"
  std::string_view summary;
};
std::span<const RotationStatusInfo> rotation_statuses() noexcept;
std::string_view rotation_status_name(RotationStatus s) noexcept;
std::optional<RotationStatus> parse_rotation_status(std::string_view name) noexcept;

}  // namespace kms
