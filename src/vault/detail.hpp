// Internals shared by the vault's translation units.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "kms/hsm.hpp"
#include "kms/secure.hpp"

namespace kms::detail {

// CKA_ID of the root key of a given generation: u64be(gen).
Bytes root_key_id(std::int64_t gen);
// The sealed master key as stored in the vault header (docs/FORMAT.md §Vault header).
Bytes seal_master(hsm::Session& session, hsm::ObjectHandle root, std::string_view vault_id,
                  std::int64_t gen, ByteView master);

// Writes DIR/softhsm2.conf pointing SoftHSM2 at DIR/tokens (creating it, 0700).
void write_softhsm_conf(const std::filesystem::path& dir);

}  // namespace kms::detail
