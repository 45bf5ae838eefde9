#include "keys/blob.hpp"

#include <fmt/format.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms {
namespace {

void put_u32(Bytes& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint32_t get_u32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         p[3];
}

std::optional<Bytes> uuid_bytes(std::string_view id) {
  if (id.size() != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-') {
    return std::nullopt;
  }
  std::string hex;
  for (char c : id) {
    if (c != '-') hex.push_back(c);
  }
  return crypto::from_hex(hex);
}

std::string uuid_text(ByteView b) {
  const std::string h = crypto::to_hex(b);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

}  // namespace

namespace blob {

Bytes encode_header(const Header& h) {
  const auto id = uuid_bytes(h.key_id);
  if (!id) throw Error(Code::usage, fmt::format("{} is not a key id", h.key_id));
  Bytes out(kBlobMagic.begin(), kBlobMagic.end());
  out.push_back(kBlobVersion);
  out.insert(out.end(), id->begin(), id->end());
  put_u32(out, h.key_version);
  return out;
}

std::optional<Parsed> parse(ByteView b) {
  if (b.size() < kMinSize || !std::equal(kBlobMagic.begin(), kBlobMagic.end(), b.begin()) ||
      b[4] != kBlobVersion) {
    return std::nullopt;
  }
  Parsed p;
  p.header.key_id = uuid_text(b.subspan(5, kKeyIdSize));
  p.header.key_version = get_u32(b.data() + 5 + kKeyIdSize);
  if (p.header.key_version == 0) return std::nullopt;
  p.header_bytes = b.first(kHeaderSize);
  p.nonce = b.subspan(kHeaderSize, kNonceSize);
  p.sealed = b.subspan(kHeaderSize + kNonceSize);
  return p;
}

Bytes aad(ByteView header_bytes, const Context& context) {
  Bytes out(header_bytes.begin(), header_bytes.end());
  const Bytes ctx = encode_context(context);
  out.insert(out.end(), ctx.begin(), ctx.end());
  return out;
}

}  // namespace blob
}  // namespace kms
