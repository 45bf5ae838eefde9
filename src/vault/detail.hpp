// Internals shared by the vault's translation units.
#pragma once

#include <cstdint>
#include <string_view>

#include "kms/hsm.hpp"
#include "kms/secure.hpp"

namespace kms::detail {

// CKA_ID of the root key of a given generation: u64be(gen).
Bytes root_key_id(std::int64_t gen);
// The sealed master key as stored in the vault header (docs/FORMAT.md §Vault header).
Bytes seal_master(hsm::Session& session, hsm::ObjectHandle root, std::string_view vault_id,
                  std::int64_t gen, ByteView master);

}  // namespace kms::detail
