#include <sodium.h>

#include <algorithm>
#include <new>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::crypto {

void init() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) std::abort();
}

void skip_cleanup_at_exit() {
  if (OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr) != 1) std::abort();
}

void skip_openssl_legacy_tables() {
  constexpr std::uint64_t opts = OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ADD_ALL_DIGESTS |
                                 OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS;
  if (OPENSSL_init_crypto(opts, nullptr) != 1) std::abort();
}

void random_fill(std::span<std::uint8_t> out) {
  init();
  if (out.empty()) return;  // an empty span may have a null data(), which randombytes_buf rejects
  randombytes_buf(out.data(), out.size());
}

std::uint32_t random_uniform(std::uint32_t upper_bound) {
  init();
  return randombytes_uniform(upper_bound);
}

Bytes random_bytes(std::size_t n) {
  Bytes b(n);
  random_fill(b);
  return b;
}

SecureBytes random_secret(std::size_t n) {
  SecureBytes b(n);
  random_fill(b.span());
  return b;
}

Digest sha256(ByteView data) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1) {
    throw Error(Code::failed, "SHA-256 failed in OpenSSL");
  }
  return d;
}

struct Sha256::Impl {
  EVP_MD* md = nullptr;
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  impl_->ctx = EVP_MD_CTX_new();
  if (!impl_->md || !impl_->ctx) throw std::bad_alloc();
  reset();
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(impl_->ctx);
  EVP_MD_free(impl_->md);
}

void Sha256::reset() {
  if (EVP_DigestInit_ex2(impl_->ctx, impl_->md, nullptr) != 1) {
    throw Error(Code::failed, "SHA-256 failed in OpenSSL");
  }
}

void Sha256::update(ByteView data) {
  if (EVP_DigestUpdate(impl_->ctx, data.data(), data.size()) != 1) {
    throw Error(Code::failed, "SHA-256 failed in OpenSSL");
  }
}

Digest Sha256::finish() {
  Digest d{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx, d.data(), &len) != 1) {
    throw Error(Code::failed, "SHA-256 failed in OpenSSL");
  }
  return d;
}

// HMAC (RFC 2104) over OpenSSL's SHA-256 (SHA-NI): the key schedule is done once, as two
// digest contexts that have absorbed K ^ ipad and K ^ opad; each MAC copies them. The contexts
// are as good as the key: OpenSSL's SHA-256 provider clears them when they are freed, and the
// padded key blocks are built in guarded memory and wiped.
struct HmacSha256::Impl {
  EVP_MD* md = nullptr;
  EVP_MD_CTX* inner = nullptr;  // after K ^ ipad
  EVP_MD_CTX* outer = nullptr;  // after K ^ opad
  EVP_MD_CTX* work = nullptr;   // reused by every call (mac() is not thread-safe)
  ~Impl() {
    EVP_MD_CTX_free(work);
    EVP_MD_CTX_free(outer);
    EVP_MD_CTX_free(inner);
    EVP_MD_free(md);
  }
};

namespace {
constexpr std::size_t kSha256Block = 64;
[[noreturn]] void hmac_failed() { throw Error(Code::failed, "HMAC-SHA256 failed in OpenSSL"); }
}  // namespace

HmacSha256::HmacSha256(ByteView key) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  m.inner = EVP_MD_CTX_new();
  m.outer = EVP_MD_CTX_new();
  m.work = EVP_MD_CTX_new();
  if (!m.md || !m.inner || !m.outer || !m.work) throw std::bad_alloc();
  // One guarded buffer: the key padded with zeros to a block, then the padded key ^ pad.
  SecureBytes buf(2 * kSha256Block);
  std::uint8_t* block = buf.data();
  std::uint8_t* pad = buf.data() + kSha256Block;
  std::fill(block, block + buf.size(), std::uint8_t{0});  // sodium_malloc does not zero
  if (key.size() > kSha256Block) {
    unsigned int len = 0;
    if (EVP_Digest(key.data(), key.size(), block, &len, m.md, nullptr) != 1) hmac_failed();
  } else if (!key.empty()) {
    std::copy(key.begin(), key.end(), block);
  }
  for (std::size_t i = 0; i < kSha256Block; ++i) pad[i] = block[i] ^ 0x36;
  if (EVP_DigestInit_ex2(m.inner, m.md, nullptr) != 1 ||
      EVP_DigestUpdate(m.inner, pad, kSha256Block) != 1) {
    hmac_failed();
  }
  for (std::size_t i = 0; i < kSha256Block; ++i) pad[i] = block[i] ^ 0x5c;
  if (EVP_DigestInit_ex2(m.outer, m.md, nullptr) != 1 ||
      EVP_DigestUpdate(m.outer, pad, kSha256Block) != 1) {
    hmac_failed();
  }
}

HmacSha256::~HmacSha256() = default;

Digest HmacSha256::mac(ByteView data) const {
  Impl& m = *impl_;
  Digest d{};
  unsigned int len = 0;
  if (EVP_MD_CTX_copy_ex(m.work, m.inner) != 1 ||
      EVP_DigestUpdate(m.work, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(m.work, d.data(), &len) != 1 ||  // d = H((K ^ ipad) || data)
      EVP_MD_CTX_copy_ex(m.work, m.outer) != 1 ||
      EVP_DigestUpdate(m.work, d.data(), d.size()) != 1 ||
      EVP_DigestFinal_ex(m.work, d.data(), &len) != 1) {
    hmac_failed();
  }
  return d;
}

bool HmacSha256::verify(ByteView data, ByteView tag) const {
  const Digest d = mac(data);
  return equal(d, tag);
}

// OpenSSL's CRYPTO_memcmp: constant-time in the contents, several times faster than
// sodium_memcmp on 32 bytes (which also calls sodium_init-guarded code on each use).
bool equal(ByteView a, ByteView b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace kms::crypto
