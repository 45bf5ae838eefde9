#include "kms/vocab.hpp"

#include <array>
#include <cstddef>
#include <type_traits>

namespace kms {
namespace {

constexpr std::array kKeyStates{
    KeyStateInfo{KeyState::enabled, "Enabled", "enabled", "the key encrypts and decrypts"},
    KeyStateInfo{KeyState::disabled, "Disabled", "disabled",
                 "the key refuses every cryptographic operation until enabled"},
    KeyStateInfo{KeyState::pending_deletion, "PendingDeletion", "pending-deletion",
                 "the key is scheduled for deletion and refuses every cryptographic operation"},
};

constexpr std::array kProtections{
    ProtectionInfo{Protection::software, "software",
                   "the key's material is sealed in the vault under the master key"},
    ProtectionInfo{Protection::hsm, "hsm",
                   "the key is generated and used in the token and never leaves it"},
};

constexpr std::array kSecretStages{
    SecretStageInfo{SecretStage::current, "current", "the version reads return by default"},
    SecretStageInfo{SecretStage::previous, "previous", "the version current before the newest"},
    SecretStageInfo{SecretStage::pending, "pending",
                    "the new version while a rotation is in progress"},
};

constexpr std::array kRotationStatuses{
    RotationStatusInfo{RotationStatus::never, "never", "the secret was never rotated"},
    RotationStatusInfo{RotationStatus::in_progress, "in_progress",
                       "a rotation made its pending version and has not finished"},
    RotationStatusInfo{RotationStatus::succeeded, "succeeded", "the last rotation finished"},
    RotationStatusInfo{RotationStatus::failed, "failed", "the last rotation failed"},
};

// Whether every row's enum value is its index (and so the table is in the enum's order).
template <auto Member, class Table>
constexpr bool in_enum_order(const Table& t) {
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (static_cast<std::size_t>(t[i].*Member) != i) return false;
  }
  return true;
}
static_assert(in_enum_order<&KeyStateInfo::state>(kKeyStates),
              "kKeyStates must list every KeyState in the enum's order");
static_assert(static_cast<std::size_t>(KeyState::pending_deletion) + 1 == kKeyStates.size(),
              "every KeyState needs its row in kKeyStates");
static_assert(in_enum_order<&ProtectionInfo::protection>(kProtections),
              "kProtections must list every Protection in the enum's order");
static_assert(static_cast<std::size_t>(Protection::hsm) + 1 == kProtections.size(),
              "every Protection needs its row in kProtections");
static_assert(in_enum_order<&SecretStageInfo::stage>(kSecretStages),
              "kSecretStages must list every SecretStage in the enum's order");
static_assert(static_cast<std::size_t>(SecretStage::pending) + 1 == kSecretStages.size(),
              "every SecretStage needs its row in kSecretStages");
static_assert(in_enum_order<&RotationStatusInfo::status>(kRotationStatuses),
              "kRotationStatuses must list every RotationStatus in the enum's order");
static_assert(static_cast<std::size_t>(RotationStatus::failed) + 1 == kRotationStatuses.size(),
              "every RotationStatus needs its row in kRotationStatuses");

// The name of an enum value; "?" for a value outside the enum (a cast, never a name to store).
template <class Table, class E>
std::string_view name_in(const Table& t, E e) noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i < t.size() ? t[i].name : std::string_view("?");
}

// The enum value a name spells (exactly: names are case-sensitive).
template <auto Member, class Table>
auto parse_in(const Table& t, std::string_view text) noexcept
    -> std::optional<std::remove_cvref_t<decltype(t[0].*Member)>> {
  for (const auto& row : t) {
    if (row.name == text) return row.*Member;
  }
  return std::nullopt;
}

}  // namespace

std::span<const KeyStateInfo> key_states() noexcept { return kKeyStates; }
std::string_view key_state_name(KeyState s) noexcept { return name_in(kKeyStates, s); }
std::optional<KeyState> parse_key_state(std::string_view name) noexcept {
  return parse_in<&KeyStateInfo::state>(kKeyStates, name);
}
std::optional<KeyState> parse_key_state_option(std::string_view option) noexcept {
  for (const KeyStateInfo& i : kKeyStates) {
    if (i.option == option) return i.state;
  }
  return std::nullopt;
}

std::span<const ProtectionInfo> protections() noexcept { return kProtections; }
std::string_view protection_name(Protection p) noexcept { return name_in(kProtections, p); }
std::optional<Protection> parse_protection(std::string_view name) noexcept {
  return parse_in<&ProtectionInfo::protection>(kProtections, name);
}

std::span<const SecretStageInfo> secret_stages() noexcept { return kSecretStages; }
std::string_view secret_stage_name(SecretStage s) noexcept { return name_in(kSecretStages, s); }
std::optional<SecretStage> parse_secret_stage(std::string_view name) noexcept {
  return parse_in<&SecretStageInfo::stage>(kSecretStages, name);
}

std::span<const RotationStatusInfo> rotation_statuses() noexcept { return kRotationStatuses; }
std::string_view rotation_status_name(RotationStatus s) noexcept {
  return name_in(kRotationStatuses, s);
}
std::optional<RotationStatus> parse_rotation_status(std::string_view name) noexcept {
  return parse_in<&RotationStatusInfo::status>(kRotationStatuses, name);
}

}  // namespace kms
