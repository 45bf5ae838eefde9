// Sealed records (docs/FORMAT.md §Sealed record): AES-256-GCM under the vault's record-sealing
// subkey, with associated data binding the value to its place (vault id, table, row id,
// version). Pure functions; Vault::seal and Vault::open_sealed supply the key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kms/secure.hpp"

namespace kms {

// Names as the spec names them.
inline constexpr std::string_view kSealedMagic = "KMSR";
inline constexpr std::uint8_t kSealedVersion = 1;

// Where a sealed value lives; bound into its associated data so a blob moved elsewhere fails.
struct RecordRef {
  std::string table;
  std::string row_id;
  std::int64_t version = 0;
};

Bytes seal_record(ByteView key, std::string_view vault_id, const RecordRef& where,
                  ByteView plaintext);
// nullopt when the blob is malformed, altered, or belongs to another place or vault.
[[nodiscard]] std::optional<SecureBytes> open_record(ByteView key, std::string_view vault_id,
                                                     const RecordRef& where, ByteView sealed);

}  // namespace kms
