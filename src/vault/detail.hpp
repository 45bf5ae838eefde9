// Internals shared by the vault's translation units.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "hsm/hsm.hpp"
#include "kms/secure.hpp"

namespace kms::detail {

// CKA_ID of the root key of a given generation: u64be(gen).
Bytes root_key_id(std::int64_t gen);
// The sealed master key as stored in the vault header (docs/FORMAT.md §Vault header).
Bytes seal_master(hsm::Session& session, hsm::ObjectHandle root, std::string_view vault_id,
                  std::int64_t gen, ByteView master);

// Refuses (Code::unavailable) to load a PKCS#11 module that the vault file's writer could have
// chosen: only one in a root-owned system library directory, registered with p11-kit, or listed
// in trusted_modules_file() is loaded. `named_by` says where the path came from, for the message.
void check_module_trusted(const std::string& module, std::string_view named_by);
// $XDG_CONFIG_HOME/kmsctl/trusted-modules (default ~/.config/kmsctl/trusted-modules).
std::filesystem::path trusted_modules_file();

// Writes DIR/softhsm2.conf pointing SoftHSM2 at DIR/tokens (creating it, 0700).
void write_softhsm_conf(const std::filesystem::path& dir);

}  // namespace kms::detail
