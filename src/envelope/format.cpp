// The file envelope header: encoding, parsing and verification (docs/FORMAT.md §11.3-11.4), and
// the frame nonce (§11.5).
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "kms/crypto.hpp"
#include "kms/envelope.hpp"
#include "kms/error.hpp"
#include "kms/signals.hpp"

namespace kms::envelope {
namespace {

void put_u16(Bytes& o, std::uint16_t v) {
  o.push_back(static_cast<std::uint8_t>(v >> 8));
  o.push_back(static_cast<std::uint8_t>(v));
}
void put_u32(Bytes& o, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) o.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

Error damaged(std::string_view what) {
  return Error(Code::integrity, fmt::format("not a valid kmsctl encrypted file: {}", what),
               Remedy::pass_encrypted_file);
}

// A bounds-checked reader over the header bytes.
class Cursor {
 public:
  explicit Cursor(ByteView d) : d_(d) {}
  bool has(std::size_t n) const { return d_.size() - pos_ >= n; }
  ByteView take(std::size_t n) {
    ByteView v = d_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  std::uint8_t u8() { return take(1)[0]; }
  std::uint16_t u16() {
    const ByteView v = take(2);
    return static_cast<std::uint16_t>((v[0] << 8) | v[1]);
  }
  std::uint32_t u32() {
    const ByteView v = take(4);
    return (std::uint32_t(v[0]) << 24) | (std::uint32_t(v[1]) << 16) | (std::uint32_t(v[2]) << 8) |
           v[3];
  }
  std::size_t pos() const { return pos_; }

 private:
  ByteView d_;
  std::size_t pos_ = 0;
};

std::optional<Context> decode_context(ByteView b) {
  Cursor c(b);
  if (!c.has(4)) return std::nullopt;
  const std::uint32_t n = c.u32();
  Context ctx;
  std::string prev;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!c.has(4)) return std::nullopt;
    const std::uint32_t kl = c.u32();
    if (!c.has(kl)) return std::nullopt;
    std::string k(as_chars(c.take(kl)));
    if (!c.has(4)) return std::nullopt;
    const std::uint32_t vl = c.u32();
    if (!c.has(vl)) return std::nullopt;
    std::string v(as_chars(c.take(vl)));
    if (i > 0 && !(prev < k)) return std::nullopt;  // canonical: strictly ascending keys
    prev = k;
    ctx.emplace(std::move(k), std::move(v));
  }
  if (c.has(1)) return std::nullopt;
  return ctx;
}

SecureBytes derive(ByteView data_key, ByteView salt, std::string_view info) {
  return crypto::hkdf_sha256(data_key, salt, as_bytes(info), 32);
}

// Everything before the header tag.
Bytes encode_body(const Header& h) {
  Bytes o(kFileMagic.begin(), kFileMagic.end());
  o.push_back(h.version);
  o.push_back(h.suite);
  put_u32(o, h.frame_size);
  o.insert(o.end(), h.salt.begin(), h.salt.end());
  const Bytes ctx = encode_context(h.context);
  put_u32(o, static_cast<std::uint32_t>(ctx.size()));
  o.insert(o.end(), ctx.begin(), ctx.end());
  put_u16(o, static_cast<std::uint16_t>(h.recipients.size()));
  for (const Recipient& r : h.recipients) {
    o.push_back(r.type);
    put_u32(o, static_cast<std::uint32_t>(r.body.size()));
    o.insert(o.end(), r.body.begin(), r.body.end());
  }
  o.insert(o.end(), h.commitment.begin(), h.commitment.end());
  return o;
}

}  // namespace

std::array<std::uint8_t, kFrameNonceSize> frame_nonce(std::uint64_t counter, bool final) noexcept {
  std::array<std::uint8_t, kFrameNonceSize> n{};  // 00 00 00 || u64be(counter) || u8(final)
  for (int i = 0; i < 8; ++i) n[3 + i] = static_cast<std::uint8_t>(counter >> (8 * (7 - i)));
  n[11] = final ? 1 : 0;
  return n;
}

void check_context(const Header& h, const Context& expected) {
  if (h.context == expected) return;
  std::string names;
  for (const auto& [k, v] : h.context) names += fmt::format("{}{}", names.empty() ? "" : ", ", k);
  throw Error(Code::integrity,
              h.context.empty()
                  ? std::string("the encryption context given does not match the file's "
                                "(the file has none)")
                  : fmt::format("the encryption context given does not match the file's "
                                "(the file's names: {})",
                                names),
              Remedy::pass_file_context);
}

std::optional<std::uint64_t> plaintext_size(const Header& h, std::uint64_t file_size) noexcept {
  if (file_size < h.encoded_size) return std::nullopt;
  const std::uint64_t body = file_size - h.encoded_size;
  const std::uint64_t frames = body / (std::uint64_t(h.frame_size) + kFrameTagSize) + 1;
  if (body < frames * kFrameTagSize) return std::nullopt;
  return body - frames * kFrameTagSize;
}

std::optional<Header> parse_header(ByteView data) {
  Cursor c(data);
  if (!c.has(4 + 1 + 1 + 4 + kSaltSize + 4)) {
    if (data.size() >= 4 && !std::equal(kFileMagic.begin(), kFileMagic.end(), data.begin())) {
      throw damaged("wrong magic");
    }
    return std::nullopt;
  }
  if (!std::equal(kFileMagic.begin(), kFileMagic.end(), c.take(4).begin()))
    throw damaged("wrong magic");
  Header h;
  h.version = c.u8();
  if (h.version != kFileVersion) throw damaged(fmt::format("unknown format version {}", h.version));
  h.suite = c.u8();
  if (h.suite != kSuiteAes256GcmHkdfSha256) throw damaged(fmt::format("unknown suite {}", h.suite));
  h.frame_size = c.u32();
  if (h.frame_size < kMinFrameSize || h.frame_size > kMaxFrameSize)
    throw damaged("frame size out of range");
  const ByteView salt = c.take(kSaltSize);
  h.salt.assign(salt.begin(), salt.end());
  const std::uint32_t ctx_len = c.u32();
  if (ctx_len > kMaxContextBytes) throw damaged("encryption context too large");
  if (!c.has(ctx_len + 2)) return std::nullopt;
  auto ctx = decode_context(c.take(ctx_len));
  if (!ctx) throw damaged("malformed encryption context");
  h.context = std::move(*ctx);
  const std::uint16_t n = c.u16();
  if (n == 0 || n > kMaxRecipients) throw damaged("recipient count out of range");
  for (std::uint16_t i = 0; i < n; ++i) {
    if (!c.has(5)) return std::nullopt;
    Recipient r;
    r.type = c.u8();
    const std::uint32_t len = c.u32();
    if (len > kMaxRecipientBody) throw damaged("recipient too large");
    if (!c.has(len)) return std::nullopt;
    const ByteView body = c.take(len);
    r.body.assign(body.begin(), body.end());
    h.recipients.push_back(std::move(r));
  }
  if (!c.has(kCommitmentSize + kHeaderTagSize)) return std::nullopt;
  const ByteView commit = c.take(kCommitmentSize);
  h.commitment.assign(commit.begin(), commit.end());
  const ByteView tag = c.take(kHeaderTagSize);
  h.tag.assign(tag.begin(), tag.end());
  h.encoded_size = c.pos();
  return h;
}

Header read_header(int fd, Bytes* rest) {
  Bytes buf;
  std::uint8_t chunk[4096];
  for (;;) {
    if (auto h = parse_header(buf)) {
      if (rest != nullptr) {
        rest->assign(buf.begin() + static_cast<std::ptrdiff_t>(h->encoded_size), buf.end());
        return *h;
      }
      if (::lseek(fd, static_cast<off_t>(h->encoded_size) - static_cast<off_t>(buf.size()),
                  SEEK_CUR) < 0) {
        throw Error(Code::failed, "the encrypted input must be seekable here");
      }
      return *h;
    }
    signals::await(fd, POLLIN);  // a caught signal ends a wait on a pipe
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw Error(Code::failed, fmt::format("cannot read the input: {}", std::strerror(errno)));
    if (n == 0) throw damaged("the header is cut short");
    buf.insert(buf.end(), chunk, chunk + n);
    if (buf.size() > (1u << 20) + kMaxRecipients * kMaxRecipientBody)
      throw damaged("header too large");
  }
}

Bytes encode_header(Header& h, ByteView data_key) {
  const SecureBytes commit = derive(data_key, h.salt, kInfoCommitment);
  h.commitment.assign(commit.data(), commit.data() + commit.size());
  Bytes out = encode_body(h);
  const SecureBytes k_header = derive(data_key, h.salt, kInfoHeader);
  const crypto::Digest tag = crypto::HmacSha256(k_header.view()).mac(out);
  h.tag.assign(tag.begin(), tag.end());
  out.insert(out.end(), tag.begin(), tag.end());
  h.encoded_size = out.size();
  return out;
}

void verify_header(const Header& h, ByteView data_key) {
  const SecureBytes commit = derive(data_key, h.salt, kInfoCommitment);
  if (!crypto::equal(commit.view(), h.commitment)) {
    throw Error(Code::integrity,
                "the file's data key does not match its key commitment: a recipient was swapped or "
                "forged",
                "treat the file as tampered with");
  }
  const SecureBytes k_header = derive(data_key, h.salt, kInfoHeader);
  if (!crypto::HmacSha256(k_header.view()).verify(encode_body(h), h.tag)) {
    throw Error(Code::integrity,
                "the file's header was altered (its authentication tag does not match)",
                "treat the file as tampered with");
  }
}

}  // namespace kms::envelope
