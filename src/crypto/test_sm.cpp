// Unit tests of kms::crypto::sm: the example vectors of the SM3 and SM4 standards, vectors made by
// the openssl command line (OpenSSL 3.0) and kept here as fixed bytes, the FORMAT.md vector of
// SM4 authenticated encryption, and tampering and misuse.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>
#include <openssl/evp.h>

#include "crypto/sm.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/secure.hpp"

using namespace kms;
namespace sm = kms::crypto::sm;

namespace {

// ctest runs this suite twice, as it does unit_crypto: as it is, and
// (unit_sm_without_legacy_tables) after skip_openssl_legacy_tables() ran before any test, as
// kmsctl runs when its token is SoftHSM2.
const bool kSkippedLegacyTables = [] {
  if (std::getenv("KMS_TEST_SKIP_OPENSSL_LEGACY_TABLES") == nullptr) return false;
  kms::crypto::skip_openssl_legacy_tables();
  return true;
}();

// Independent of kms::crypto::from_hex, so a bug there cannot hide a bug in the vectors' use.
Bytes unhex(std::string_view h) {
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("bad hex in test vector");
  };
  if (h.size() % 2 != 0) throw std::invalid_argument("odd hex in test vector");
  Bytes out(h.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(nib(h[2 * i]) << 4 | nib(h[2 * i + 1]));
  }
  return out;
}

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes concat(ByteView a, ByteView b) {
  Bytes out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::string hex(ByteView b) { return crypto::to_hex(b); }

// SM4 in ECB mode over whole blocks, straight from OpenSSL: the block cipher the tests check
// SM4-CTR against.
Bytes sm4_ecb(ByteView key, ByteView in) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  REQUIRE(ctx != nullptr);
  Bytes out(in.size() + 16);
  int len = 0, fin = 0;
  const bool ok = EVP_EncryptInit_ex2(ctx, EVP_sm4_ecb(), key.data(), nullptr, nullptr) == 1 &&
                  EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
                  EVP_EncryptUpdate(ctx, out.data(), &len, in.data(), int(in.size())) == 1 &&
                  EVP_EncryptFinal_ex(ctx, out.data() + len, &fin) == 1;
  EVP_CIPHER_CTX_free(ctx);
  REQUIRE(ok);
  out.resize(std::size_t(len + fin));
  return out;
}

// HMAC (RFC 2104) and HKDF (RFC 5869) written out over sm::sm3 and sm::hmac_sm3, to check
// OpenSSL's HMAC and HKDF with SM3 against the definitions.
Bytes hmac_by_definition(ByteView key, ByteView data) {
  Bytes k(64, 0);
  if (key.size() > 64) {
    const auto d = sm::sm3(key);
    std::copy(d.begin(), d.end(), k.begin());
  } else {
    std::copy(key.begin(), key.end(), k.begin());
  }
  Bytes inner(64), outer(64);
  for (size_t i = 0; i < 64; ++i) {
    inner[i] = k[i] ^ 0x36;
    outer[i] = k[i] ^ 0x5c;
  }
  const auto h = sm::sm3(concat(inner, data));
  const auto o = sm::sm3(concat(outer, h));
  return Bytes(o.begin(), o.end());
}

Bytes hkdf_by_definition(ByteView ikm, ByteView salt, ByteView info, size_t length) {
  const Bytes zero_salt(32, 0);
  const auto prk = sm::hmac_sm3(salt.empty() ? ByteView(zero_salt) : salt, ikm);
  Bytes okm, t;
  for (std::uint8_t i = 1; okm.size() < length; ++i) {
    Bytes block = concat(t, info);
    block.push_back(i);
    const auto d = sm::hmac_sm3(prk, block);
    t.assign(d.begin(), d.end());
    okm.insert(okm.end(), t.begin(), t.end());
  }
  okm.resize(length);
  return okm;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SM3, HMAC-SM3, HKDF-SM3
// ---------------------------------------------------------------------------------------------

TEST_CASE("the suite runs with OpenSSL's legacy name tables as the environment asks") {
  CHECK((EVP_get_digestbyname("SM3") == nullptr) == kSkippedLegacyTables);
}

TEST_CASE("sm3 matches the two examples of GB/T 32905") {
  // Example 1: "abc"; example 2: "abcd" repeated 16 times (64 bytes, two blocks once padded).
  CHECK(hex(sm::sm3(bytes_of("abc"))) ==
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
  std::string abcd;
  for (int i = 0; i < 16; ++i) abcd += "abcd";
  CHECK(hex(sm::sm3(bytes_of(abcd))) ==
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732");
  CHECK(hex(sm::sm3({})) == "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b");
}

TEST_CASE("hmac_sm3 matches openssl mac and RFC 2104 written out over sm3, for every key size") {
  // openssl mac -digest SM3 -macopt hexkey:000102...1f HMAC
  const Bytes key = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  const Bytes msg = bytes_of("The quick brown fox jumps over the lazy dog");
  CHECK(hex(sm::hmac_sm3(key, msg)) ==
        "be1c9ca286f325f95cf8d9020e4242747d60faa7069d1e9758a28597c712eb46");
  // A 100-byte key (longer than SM3's 64-byte block: hashed first), as openssl mac computes it.
  CHECK(hex(sm::hmac_sm3(Bytes(100, 0xaa),
                         bytes_of("Test Using Larger Than Block-Size Key - Hash Key First"))) ==
        "ddfd727df11b435760f1fa6638e2c059a66a74da8432815201915246e6211294");
  for (size_t n : {0, 1, 31, 32, 63, 64, 65, 100, 200}) {
    CAPTURE(n);
    Bytes k(n);
    for (size_t i = 0; i < n; ++i) k[i] = static_cast<std::uint8_t>(i * 7 + 1);
    CHECK(hex(sm::hmac_sm3(k, msg)) == hex(hmac_by_definition(k, msg)));
    CHECK(hex(sm::hmac_sm3(k, {})) == hex(hmac_by_definition(k, {})));
  }
}

TEST_CASE("hkdf_sm3 matches openssl kdf and RFC 5869 written out over hmac_sm3") {
  // The inputs of RFC 5869 test case 1, with SM3:
  // openssl kdf -keylen 42 -kdfopt digest:SM3 -kdfopt hexkey:0b0b... -kdfopt hexsalt:0001...0c
  //     -kdfopt hexinfo:f0f1...f9 HKDF
  const Bytes ikm(22, 0x0b);
  const Bytes salt = unhex("000102030405060708090a0b0c");
  const Bytes info = unhex("f0f1f2f3f4f5f6f7f8f9");
  const SecureBytes okm = sm::hkdf_sm3(ikm, salt, info, 42);
  CHECK(hex(okm.view()) ==
        "c69fe91b7aaee2dd5718d72dcaee0cce93f1b8e41f792da51261b6a517e68b36ed2c595572b01dfa359b");
  for (size_t len : {1, 16, 32, 33, 48, 64, 100, 8160}) {
    CAPTURE(len);
    CHECK(hex(sm::hkdf_sm3(ikm, salt, info, len).view()) ==
          hex(hkdf_by_definition(ikm, salt, info, len)));
    CHECK(hex(sm::hkdf_sm3(ikm, {}, {}, len).view()) == hex(hkdf_by_definition(ikm, {}, {}, len)));
  }
  CHECK_THROWS_AS((void)sm::hkdf_sm3(ikm, salt, info, 0), Error);
  CHECK_THROWS_AS((void)sm::hkdf_sm3(ikm, salt, info, 255 * 32 + 1), Error);
}

// ---------------------------------------------------------------------------------------------
// SM4
// ---------------------------------------------------------------------------------------------

TEST_CASE("OpenSSL's SM4 matches the examples of GB/T 32907") {
  const Bytes key = unhex("0123456789abcdeffedcba9876543210");
  // Example 1: one block, key = plaintext.
  CHECK(hex(sm4_ecb(key, key)) == "681edf34d206965e86b3e94f536e4246");
  // Example 2: the same block encrypted 1 000 000 times under the same key.
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  REQUIRE(ctx != nullptr);
  REQUIRE(EVP_EncryptInit_ex2(ctx, EVP_sm4_ecb(), key.data(), nullptr, nullptr) == 1);
  REQUIRE(EVP_CIPHER_CTX_set_padding(ctx, 0) == 1);
  Bytes block = key;
  bool ok = true;
  for (int i = 0; i < 1000000 && ok; ++i) {
    int len = 0;
    ok = EVP_EncryptUpdate(ctx, block.data(), &len, block.data(), 16) == 1 && len == 16;
  }
  EVP_CIPHER_CTX_free(ctx);
  CHECK(ok);
  CHECK(hex(block) == "595298c7c6fd271f0402f804c33d3f66");
}

namespace {
// The vector of FORMAT.md, "SM4 authenticated encryption".
const Bytes kAeadKey = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
const Bytes kAeadIv = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
const Bytes kAeadAad = bytes_of("kmsctl example aad");
const Bytes kAeadPlaintext = bytes_of("The quick brown fox jumps over the lazy dog.");
}  // namespace

TEST_CASE("sm4_seal gives the FORMAT.md vector, step by step, and sm4_open recovers it") {
  // Each value below was computed by the openssl command line (openssl kdf ... HKDF, openssl enc
  // -sm4-ctr, openssl mac ... HMAC), independently of sm.cpp.
  const SecureBytes okm =
      sm::hkdf_sm3(kAeadKey, {}, as_bytes(sm::kSm4AeadKeyInfo), 48);  // k_enc || k_mac
  CHECK(hex(okm.view().first(16)) == "b438b7511ccdfe6099e50cca42446aa0");
  CHECK(hex(okm.view().subspan(16)) ==
        "3110d2c98e8db1cd7a727b82f5e38b217362dc54df9a3ffbb8b5a2f4eb4ece1f");
  const Bytes sealed = sm::sm4_seal(kAeadKey, kAeadIv, kAeadAad, kAeadPlaintext);
  REQUIRE(sealed.size() == kAeadPlaintext.size() + sm::kSm4TagSize);
  const ByteView ciphertext = ByteView(sealed).first(kAeadPlaintext.size());
  const ByteView tag = ByteView(sealed).subspan(kAeadPlaintext.size());
  CHECK(hex(ciphertext) ==
        "832dafbedd8afdaabb2bbdef530727a1b9af1e0601ecf3ff31b7903b504537190d34e60417d6121216f580f1");
  CHECK(hex(tag) == "5b10258f50b0672a08efc8e39faf2818b94a2fd939249c4f64cc803418d1ba61");
  // The tag is HMAC-SM3(k_mac, u64be(len(aad)) || aad || iv || ciphertext).
  Bytes mac_input = unhex("0000000000000012");
  mac_input = concat(concat(concat(mac_input, kAeadAad), kAeadIv), ciphertext);
  CHECK(hex(sm::hmac_sm3(okm.view().subspan(16), mac_input)) == hex(tag));
  const auto opened = sm::sm4_open(kAeadKey, kAeadIv, kAeadAad, sealed);
  REQUIRE(opened.has_value());
  CHECK(hex(opened->view()) == hex(kAeadPlaintext));
}

TEST_CASE(
    "sm4_seal's ciphertext is SM4-CTR under k_enc, its counter a 128-bit big-endian integer") {
  const SecureBytes okm = sm::hkdf_sm3(kAeadKey, {}, as_bytes(sm::kSm4AeadKeyInfo), 48);
  const ByteView k_enc = okm.view().first(16);
  // An iv whose low 64 bits are all ones: the counter carries into the high half.
  const Bytes iv = unhex("00112233445566ffffffffffffffffff");
  Bytes counters = iv;
  for (std::uint8_t step = 1; step <= 3; ++step) {
    Bytes next(counters.end() - 16, counters.end());
    for (int i = 15; i >= 0 && ++next[size_t(i)] == 0; --i) {
    }
    counters.insert(counters.end(), next.begin(), next.end());
  }
  const Bytes keystream = sm4_ecb(k_enc, counters);  // 4 blocks
  Bytes plaintext(61);                               // the last block partial
  for (size_t i = 0; i < plaintext.size(); ++i) plaintext[i] = static_cast<std::uint8_t>(i);
  const Bytes sealed = sm::sm4_seal(kAeadKey, iv, {}, plaintext);
  Bytes expected(plaintext.size());
  for (size_t i = 0; i < plaintext.size(); ++i) expected[i] = plaintext[i] ^ keystream[i];
  CHECK(hex(ByteView(sealed).first(plaintext.size())) == hex(expected));
  CHECK(hex(unhex("00112233445567000000000000000000")) == hex(ByteView(counters).subspan(16, 16)));
}

TEST_CASE("sm4 round-trips every plaintext length up to three blocks, with and without aad") {
  for (size_t n = 0; n <= 48; ++n) {
    CAPTURE(n);
    Bytes pt(n, 0x5a);
    for (const Bytes& aad : {Bytes{}, kAeadAad}) {
      const Bytes sealed = sm::sm4_seal(kAeadKey, kAeadIv, aad, pt);
      CHECK(sealed.size() == n + sm::kSm4TagSize);
      const auto opened = sm::sm4_open(kAeadKey, kAeadIv, aad, sealed);
      REQUIRE(opened.has_value());
      CHECK(hex(opened->view()) == hex(pt));
    }
  }
}

TEST_CASE("sm4_open rejects any flipped bit of the ciphertext, tag, aad, iv or key") {
  const Bytes sealed = sm::sm4_seal(kAeadKey, kAeadIv, kAeadAad, kAeadPlaintext);
  auto flips = [](const Bytes& b, const std::function<void(const Bytes&)>& each) {
    for (size_t i = 0; i < b.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        Bytes bad = b;
        bad[i] ^= static_cast<std::uint8_t>(1u << bit);
        each(bad);
      }
    }
  };
  int rejected = 0, tried = 0;
  auto count = [&](const std::optional<SecureBytes>& r) {
    ++tried;
    if (!r) ++rejected;
  };
  flips(sealed, [&](const Bytes& b) { count(sm::sm4_open(kAeadKey, kAeadIv, kAeadAad, b)); });
  flips(kAeadAad, [&](const Bytes& b) { count(sm::sm4_open(kAeadKey, kAeadIv, b, sealed)); });
  flips(kAeadIv, [&](const Bytes& b) { count(sm::sm4_open(kAeadKey, b, kAeadAad, sealed)); });
  flips(kAeadKey, [&](const Bytes& b) { count(sm::sm4_open(b, kAeadIv, kAeadAad, sealed)); });
  CHECK(tried == 8 * int(sealed.size() + kAeadAad.size() + 16 + 32));
  CHECK(rejected == tried);
}

TEST_CASE("sm4_open rejects truncation, extension, moved aad bytes and a short input") {
  const Bytes sealed = sm::sm4_seal(kAeadKey, kAeadIv, kAeadAad, kAeadPlaintext);
  for (size_t n = 0; n < sealed.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(sm::sm4_open(kAeadKey, kAeadIv, kAeadAad, ByteView(sealed).first(n)).has_value());
  }
  CHECK_FALSE(sm::sm4_open(kAeadKey, kAeadIv, kAeadAad, concat(sealed, Bytes{0})).has_value());
  CHECK_FALSE(sm::sm4_open(kAeadKey, kAeadIv, {}, sealed).has_value());
  // The aad's length is in the MAC: an aad that gives up its last byte to the ciphertext (an
  // equal concatenation of aad and ciphertext) does not verify.
  const Bytes aad = bytes_of("ab"), pt = bytes_of("cd");
  const Bytes s1 = sm::sm4_seal(kAeadKey, kAeadIv, aad, pt);
  CHECK_FALSE(sm::sm4_open(kAeadKey, kAeadIv, bytes_of("a"), s1).has_value());
  // An empty plaintext still has its tag, and it is checked.
  const Bytes empty = sm::sm4_seal(kAeadKey, kAeadIv, kAeadAad, {});
  REQUIRE(empty.size() == sm::kSm4TagSize);
  const auto opened = sm::sm4_open(kAeadKey, kAeadIv, kAeadAad, empty);
  REQUIRE(opened.has_value());
  CHECK(opened->empty());
  CHECK_FALSE(sm::sm4_open(kAeadKey, kAeadIv, bytes_of("x"), empty).has_value());
}

TEST_CASE("sm4_seal and sm4_open throw kms::Error on a key or iv of the wrong size") {
  for (size_t n : {0, 16, 31, 33, 64}) {
    CAPTURE(n);
    const Bytes key(n, 1);
    CHECK_THROWS_AS((void)sm::sm4_seal(key, kAeadIv, {}, kAeadPlaintext), Error);
    CHECK_THROWS_AS((void)sm::sm4_open(key, kAeadIv, {}, Bytes(40)), Error);
  }
  for (size_t n : {0, 8, 12, 15, 17, 32}) {
    CAPTURE(n);
    const Bytes iv(n, 1);
    CHECK_THROWS_AS((void)sm::sm4_seal(kAeadKey, iv, {}, kAeadPlaintext), Error);
    CHECK_THROWS_AS((void)sm::sm4_open(kAeadKey, iv, {}, Bytes(40)), Error);
  }
}

TEST_CASE("sm4_seal under two ivs gives unrelated ciphertexts and tags") {
  const Bytes iv2 = crypto::random_bytes(sm::kSm4IvSize);
  const Bytes a = sm::sm4_seal(kAeadKey, kAeadIv, kAeadAad, kAeadPlaintext);
  const Bytes b = sm::sm4_seal(kAeadKey, iv2, kAeadAad, kAeadPlaintext);
  CHECK(hex(a) != hex(b));
  CHECK_FALSE(sm::sm4_open(kAeadKey, iv2, kAeadAad, a).has_value());
}
