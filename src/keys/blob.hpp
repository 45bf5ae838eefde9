// The ciphertext blob of `kmsctl encrypt` and of data keys (docs/FORMAT.md §12):
// self-describing (key id and version inside), AES-256-GCM, with the encryption context
// authenticated in a canonical, order-independent encoding. Pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "kms/context.hpp"
#include "kms/secure.hpp"

namespace kms {

namespace blob {

// Names as the spec names them.
inline constexpr std::string_view kBlobMagic = "KMSC";
inline constexpr std::uint8_t kBlobVersion = 1;
inline constexpr std::size_t kKeyIdSize = 16;
inline constexpr std::size_t kHeaderSize = 4 + 1 + kKeyIdSize + 4;
inline constexpr std::size_t kNonceSize = 12;
inline constexpr std::size_t kTagSize = 16;
inline constexpr std::size_t kMinSize = kHeaderSize + kNonceSize + kTagSize;

struct Header {
  std::string key_id;  // canonical UUID text
  std::uint32_t key_version = 0;
};

struct Parsed {
  Header header;
  ByteView header_bytes;  // the first kHeaderSize bytes, part of the AAD
  ByteView nonce;
  ByteView sealed;  // ciphertext || tag
};

// Code::usage when key_id is not a UUID.
Bytes encode_header(const Header& h);
// nullopt when the blob is not a well-formed version-1 blob.
std::optional<Parsed> parse(ByteView blob);
// AAD = header bytes || encode_context(context)
Bytes aad(ByteView header_bytes, const Context& context);

}  // namespace blob
}  // namespace kms
