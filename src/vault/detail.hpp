// Internals shared by the vault's translation units.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "hsm/hsm.hpp"
#include "kms/secure.hpp"

namespace kms::detail {

// CKA_ID of the root key of a given generation: u64be(gen).
Bytes root_key_id(std::int64_t gen);

// How the root key seals the master key: the version byte of the sealed master key
// (docs/FORMAT.md §5).
enum class MasterSeal : std::uint8_t {
  token_gcm = 1,   // AES-256-GCM in the token, under an AES root key
  token_hmac = 2,  // AES-256-GCM in kmsctl, under a key the token derives (HMAC-SHA256 root key)
};
// The seal for a new root key in this token: token_gcm when the token offers CKM_AES_GCM, else
// token_hmac (a token reached through a forwarder that cannot carry CK_GCM_PARAMS, such as
// p11-kit's before 0.25); Code::unavailable when it offers neither.
MasterSeal choose_master_seal(hsm::Session& session);
// A root key of generation `gen` for `seal`, generated in the token (never extractable).
hsm::ObjectHandle generate_root_key(hsm::Session& session, MasterSeal seal, std::string_view label,
                                    std::int64_t gen);
// The sealed master key as stored in the vault header (docs/FORMAT.md §5).
Bytes seal_master(hsm::Session& session, MasterSeal seal, hsm::ObjectHandle root,
                  std::string_view vault_id, std::int64_t gen, ByteView master);
// The seal a sealed master key names; Code::integrity when it is not one (length, magic, version).
MasterSeal seal_of(ByteView sealed);
// The master key, or nullopt when `sealed` does not open with `root`; Code::integrity when it is
// not a sealed master key at all.
std::optional<SecureBytes> open_master(hsm::Session& session, hsm::ObjectHandle root,
                                       std::string_view vault_id, std::int64_t gen,
                                       ByteView sealed);

// Refuses (Code::unavailable) to load a PKCS#11 module that the vault file's writer could have
// chosen: only one in a root-owned system library directory, registered with p11-kit, or listed
// in trusted_modules_file() is loaded. `named_by` says where the path came from, for the message.
void check_module_trusted(const std::string& module, std::string_view named_by);
// $XDG_CONFIG_HOME/kmsctl/trusted-modules (default ~/.config/kmsctl/trusted-modules).
std::filesystem::path trusted_modules_file();

// Writes DIR/softhsm2.conf pointing SoftHSM2 at DIR/tokens (creating it, 0700).
void write_softhsm_conf(const std::filesystem::path& dir);

}  // namespace kms::detail
