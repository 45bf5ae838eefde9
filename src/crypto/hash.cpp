#include <openssl/evp.h>
#include <sodium.h>

#include <new>

#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::crypto {

void init() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) std::abort();
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

// The keyed state lives in guarded memory: it is as good as the key.
struct HmacSha256::Impl {
  SecureBytes state{sizeof(crypto_auth_hmacsha256_state)};
  const crypto_auth_hmacsha256_state* keyed() const {
    return reinterpret_cast<const crypto_auth_hmacsha256_state*>(state.data());
  }
};

HmacSha256::HmacSha256(ByteView key) : impl_(std::make_unique<Impl>()) {
  init();
  crypto_auth_hmacsha256_init(reinterpret_cast<crypto_auth_hmacsha256_state*>(impl_->state.data()),
                              key.data(), key.size());
}

HmacSha256::~HmacSha256() = default;

Digest HmacSha256::mac(ByteView data) const {
  crypto_auth_hmacsha256_state st = *impl_->keyed();
  crypto_auth_hmacsha256_update(&st, data.data(), data.size());
  Digest d{};
  crypto_auth_hmacsha256_final(&st, d.data());
  sodium_memzero(&st, sizeof st);
  return d;
}

bool HmacSha256::verify(ByteView data, ByteView tag) const {
  const Digest d = mac(data);
  return equal(d, tag);
}

bool equal(ByteView a, ByteView b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace kms::crypto
