// Unit tests of kms::crypto and kms::SecureBytes: Wycheproof known-answer and known-bad vectors
// for AES-GCM, HKDF-SHA256 and HMAC-SHA256, bit-flip tests, and the encoding helpers.
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "support.hpp"
#include "vectors.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/secure.hpp"

using namespace kms;
using kms::test::bytes_of;

using kms::test::case_name;
using kms::test::load_vectors;
using kms::test::unhex;

namespace {

const bool kSkippedLegacyTables = kms::test::skip_legacy_tables_if_asked();

Bytes concat(ByteView a, ByteView b) {
  Bytes out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

bool same(ByteView a, ByteView b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

const Bytes kKey = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
const Bytes kNonce = unhex("a0a1a2a3a4a5a6a7a8a9aaab");
const Bytes kAad = bytes_of("vault/1234|table=keys|row=7");
const Bytes kMsg = bytes_of("the quick brown fox jumps over the lazy dog, twice");

}  // namespace

// ---------------------------------------------------------------------------------------------
// AES-GCM
// ---------------------------------------------------------------------------------------------

TEST_CASE("skip_openssl_legacy_tables empties OpenSSL's legacy name lookup, and only it does") {
  // Every other test of this file then shows that the wrappers do not depend on that lookup.
  CHECK((EVP_get_cipherbyname("AES-256-GCM") == nullptr) == kSkippedLegacyTables);
  CHECK((EVP_get_digestbyname("SHA256") == nullptr) == kSkippedLegacyTables);
  // A provider fetch by name is unaffected.
  EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  CHECK(c != nullptr);
  EVP_CIPHER_free(c);
}

TEST_CASE("aes_gcm_seal and aes_gcm_open pass every Wycheproof aes_gcm_test.json vector") {
  const nlohmann::json doc = load_vectors("aes_gcm_test.json");
  int valid = 0, invalid = 0, throwing = 0, unsupported_long_iv = 0;
  for (const auto& g : doc.at("testGroups")) {
    const size_t tag_size = g.at("tagSize").get<size_t>() / 8;
    const size_t key_size = g.at("keySize").get<size_t>() / 8;
    const size_t iv_size = g.at("ivSize").get<size_t>() / 8;
    for (const auto& t : g.at("tests")) {
      CAPTURE(case_name(t));
      const Bytes key = unhex(t, "key"), iv = unhex(t, "iv"), aad = unhex(t, "aad");
      const Bytes msg = unhex(t, "msg"), ct = unhex(t, "ct"), tag = unhex(t, "tag");
      REQUIRE(key.size() == key_size);
      REQUIRE(iv.size() == iv_size);
      const Bytes ct_tag = concat(ct, tag);
      const std::string result = t.at("result");
      if (result == "valid" && iv.size() > crypto::kGcmMaxNonceSize) {
        // Longer nonces are outside what the wrapper supports: refused as misuse, never wrong.
        ++unsupported_long_iv;
        CHECK_THROWS_AS((void)crypto::aes_gcm_seal(key, iv, aad, msg, tag_size), kms::Error);
        CHECK_THROWS_AS((void)crypto::aes_gcm_open(key, iv, aad, ct_tag, tag_size), kms::Error);
      } else if (result == "valid") {
        ++valid;
        CHECK(tag.size() == tag_size);
        // A valid vector must work: an exception is reported for this vector and the run goes on.
        try {
          const Bytes sealed = crypto::aes_gcm_seal(key, iv, aad, msg, tag_size);
          CHECK(crypto::to_hex(sealed) == crypto::to_hex(ct_tag));
        } catch (const std::exception& e) {
          FAIL_CHECK("aes_gcm_seal threw on a valid vector (iv "
                     << iv.size() << " bytes): " << std::string(e.what()));
        }
        try {
          const auto opened = crypto::aes_gcm_open(key, iv, aad, ct_tag, tag_size);
          CHECK(opened.has_value());
          if (opened) CHECK(crypto::to_hex(opened->view()) == crypto::to_hex(msg));
        } catch (const std::exception& e) {
          FAIL_CHECK("aes_gcm_open threw on a valid vector (iv "
                     << iv.size() << " bytes): " << std::string(e.what()));
        }
      } else {
        REQUIRE(result == "invalid");
        ++invalid;
        if (iv.empty()) {
          // Unsupported parameters are misuse: both directions throw kms::Error.
          ++throwing;
          CHECK_THROWS_AS((void)crypto::aes_gcm_seal(key, iv, aad, msg, tag_size), kms::Error);
          CHECK_THROWS_AS((void)crypto::aes_gcm_open(key, iv, aad, ct_tag, tag_size), kms::Error);
        } else {
          bool rejected = false;
          try {
            rejected = !crypto::aes_gcm_open(key, iv, aad, ct_tag, tag_size).has_value();
          } catch (const kms::Error&) {
            rejected = true;
            ++throwing;
          }
          CHECK_MESSAGE(rejected, "an invalid vector opened");
        }
      }
    }
  }
  MESSAGE("aes_gcm_test.json: " << valid << " valid, " << invalid << " invalid (" << throwing
                                << " of them by kms::Error), " << unsupported_long_iv
                                << " valid with a nonce over kGcmMaxNonceSize refused");
  CHECK(valid > 0);
  CHECK(invalid > 0);
  CHECK(valid + invalid + unsupported_long_iv == doc.at("numberOfTests").get<int>());
}

TEST_CASE("aes_gcm_seal returns ciphertext plus a 16-byte tag and aes_gcm_open recovers it") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg);
  CHECK(sealed.size() == kMsg.size() + crypto::kGcmTagSize);
  CHECK_FALSE(same(ByteView(sealed).first(kMsg.size()), kMsg));
  const auto opened = crypto::aes_gcm_open(kKey, kNonce, kAad, sealed);
  REQUIRE(opened.has_value());
  CHECK(same(opened->view(), kMsg));
}

TEST_CASE("aes_gcm round-trips an empty plaintext and empty aad") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, {}, {});
  CHECK(sealed.size() == crypto::kGcmTagSize);
  const auto opened = crypto::aes_gcm_open(kKey, kNonce, {}, sealed);
  REQUIRE(opened.has_value());
  CHECK(opened->empty());
}

TEST_CASE("aes_gcm_open rejects any flipped bit of the ciphertext or tag") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg);
  int flipped = 0;
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = sealed;
      bad[i] ^= static_cast<std::uint8_t>(1u << bit);
      CAPTURE(i);
      CAPTURE(bit);
      CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, kAad, bad).has_value());
      ++flipped;
    }
  }
  CHECK(flipped == int(sealed.size() * 8));
}

TEST_CASE("aes_gcm_open rejects any flipped bit of the aad") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg);
  for (size_t i = 0; i < kAad.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes aad = kAad;
      aad[i] ^= static_cast<std::uint8_t>(1u << bit);
      CAPTURE(i);
      CAPTURE(bit);
      CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, aad, sealed).has_value());
    }
  }
}

TEST_CASE("aes_gcm_open rejects any flipped bit of the nonce") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg);
  for (size_t i = 0; i < kNonce.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes nonce = kNonce;
      nonce[i] ^= static_cast<std::uint8_t>(1u << bit);
      CHECK_FALSE(crypto::aes_gcm_open(kKey, nonce, kAad, sealed).has_value());
    }
  }
}

TEST_CASE("aes_gcm_open rejects a missing, added or removed aad") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg);
  CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, {}, sealed).has_value());
  Bytes longer = kAad;
  longer.push_back(0);
  CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, longer, sealed).has_value());
  const Bytes unsealed_aad = crypto::aes_gcm_seal(kKey, kNonce, {}, kMsg);
  CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, kAad, unsealed_aad).has_value());
}

TEST_CASE("aes_gcm_open rejects every truncation and extension of the sealed bytes") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg);
  for (size_t n = 0; n < sealed.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, kAad, ByteView(sealed).first(n)).has_value());
  }
  Bytes extended = sealed;
  extended.push_back(0);
  CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, kAad, extended).has_value());
}

TEST_CASE("aes_gcm_open rejects a wrong key of every size") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg);
  for (size_t i = 0; i < kKey.size(); ++i) {
    Bytes key = kKey;
    key[i] ^= 0x01;
    CHECK_FALSE(crypto::aes_gcm_open(key, kNonce, kAad, sealed).has_value());
  }
  // The same bytes read as AES-128 and AES-192 keys do not open an AES-256 ciphertext.
  CHECK_FALSE(crypto::aes_gcm_open(ByteView(kKey).first(16), kNonce, kAad, sealed).has_value());
  CHECK_FALSE(crypto::aes_gcm_open(ByteView(kKey).first(24), kNonce, kAad, sealed).has_value());
}

TEST_CASE("aes_gcm_open with a shorter tag size does not accept a truncated full tag") {
  const Bytes sealed = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg);
  // Reading the last 4 bytes of the 16-byte tag as a 12-byte ciphertext tail plus tag fails.
  CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, kAad, sealed, 12).has_value());
  const Bytes short_tag = crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg, 12);
  CHECK(short_tag.size() == kMsg.size() + 12);
  // The 12-byte tag is the prefix of the 16-byte tag (GCM truncation).
  CHECK(same(ByteView(short_tag), ByteView(sealed).first(kMsg.size() + 12)));
  CHECK(crypto::aes_gcm_open(kKey, kNonce, kAad, short_tag, 12).has_value());
  CHECK_FALSE(crypto::aes_gcm_open(kKey, kNonce, kAad, short_tag).has_value());
}

TEST_CASE("aes_gcm_seal and aes_gcm_open throw kms::Error on misuse") {
  const Bytes bad_key(31, 0x11);
  CHECK_THROWS_AS((void)crypto::aes_gcm_seal(bad_key, kNonce, kAad, kMsg), kms::Error);
  CHECK_THROWS_AS((void)crypto::aes_gcm_open(bad_key, kNonce, kAad, kMsg), kms::Error);
  CHECK_THROWS_AS((void)crypto::aes_gcm_seal(Bytes{}, kNonce, kAad, kMsg), kms::Error);
  CHECK_THROWS_AS((void)crypto::aes_gcm_seal(kKey, Bytes{}, kAad, kMsg), kms::Error);
  CHECK_THROWS_AS((void)crypto::aes_gcm_open(kKey, Bytes{}, kAad, kMsg), kms::Error);
  CHECK_THROWS_AS((void)crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg, 3), kms::Error);
  CHECK_THROWS_AS((void)crypto::aes_gcm_seal(kKey, kNonce, kAad, kMsg, 17), kms::Error);
  CHECK_THROWS_AS((void)crypto::aes_gcm_open(kKey, kNonce, kAad, kMsg, 17), kms::Error);
  CHECK_THROWS_AS((void)crypto::aes_gcm_open(kKey, kNonce, kAad, kMsg, 0), kms::Error);
}

// ---------------------------------------------------------------------------------------------
// Aes256Gcm: the reusable context for streams of frames
// ---------------------------------------------------------------------------------------------

TEST_CASE("Aes256Gcm passes every Wycheproof AES-256 / 96-bit IV / 128-bit tag vector") {
  const nlohmann::json doc = load_vectors("aes_gcm_test.json");
  int valid = 0, invalid = 0;
  for (const auto& g : doc.at("testGroups")) {
    if (g.at("keySize") != 256 || g.at("ivSize") != 96 || g.at("tagSize") != 128) continue;
    for (const auto& t : g.at("tests")) {
      CAPTURE(case_name(t));
      const Bytes key = unhex(t, "key"), iv = unhex(t, "iv"), aad = unhex(t, "aad");
      const Bytes msg = unhex(t, "msg"), ct = unhex(t, "ct"), tag = unhex(t, "tag");
      crypto::Aes256Gcm gcm(key);
      Bytes out(msg.size() + 1), got_tag(crypto::kGcmTagSize);
      if (t.at("result") == "valid") {
        ++valid;
        gcm.seal(iv, aad, msg.data(), msg.size(), out.data(), got_tag.data());
        CHECK(crypto::to_hex(ByteView(out).first(msg.size())) == crypto::to_hex(ct));
        CHECK(crypto::to_hex(got_tag) == crypto::to_hex(tag));
        Bytes plain(ct.size() + 1);
        CHECK(gcm.open(iv, aad, ct.data(), ct.size(), tag.data(), plain.data()));
        CHECK(crypto::to_hex(ByteView(plain).first(ct.size())) == crypto::to_hex(msg));
      } else {
        ++invalid;
        Bytes plain(ct.size() + 1);
        CHECK_FALSE(gcm.open(iv, aad, ct.data(), ct.size(), tag.data(), plain.data()));
      }
    }
  }
  MESSAGE("Aes256Gcm on aes_gcm_test.json: " << valid << " valid, " << invalid << " invalid");
  CHECK(valid > 0);
  CHECK(invalid > 0);
}

TEST_CASE(
    "Aes256Gcm reused across frames matches aes_gcm_seal, in place, even after a failed open") {
  crypto::Aes256Gcm gcm(kKey);
  for (int frame = 0; frame < 50; ++frame) {
    CAPTURE(frame);
    Bytes nonce = kNonce;
    nonce[11] = static_cast<std::uint8_t>(frame);
    const Bytes aad = bytes_of("frame " + std::to_string(frame));
    Bytes buf(static_cast<size_t>(frame) * 37);
    for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(i + frame);
    const Bytes plain = buf;
    const Bytes expected = crypto::aes_gcm_seal(kKey, nonce, aad, plain);
    std::uint8_t tag[crypto::kGcmTagSize];
    gcm.seal(nonce, aad, buf.data(), buf.size(), buf.data(), tag);  // in place
    CHECK(crypto::to_hex(buf) == crypto::to_hex(ByteView(expected).first(plain.size())));
    CHECK(crypto::to_hex(ByteView(tag, sizeof tag)) ==
          crypto::to_hex(ByteView(expected).subspan(plain.size())));
    // A failed open (flipped tag) must not disturb the next one.
    std::uint8_t bad[crypto::kGcmTagSize];
    std::copy(tag, tag + sizeof tag, bad);
    bad[frame % 16] ^= 0x10;
    Bytes scratch(buf.size() + 1);
    CHECK_FALSE(gcm.open(nonce, aad, buf.data(), buf.size(), bad, scratch.data()));
    CHECK(gcm.open(nonce, aad, buf.data(), buf.size(), tag, buf.data()));  // in place
    CHECK(buf == plain);
  }
}

TEST_CASE("Aes256Gcm open rejects any flipped bit of ciphertext, tag, aad or nonce") {
  crypto::Aes256Gcm gcm(kKey);
  Bytes ct(kMsg.size());
  std::uint8_t tag[crypto::kGcmTagSize];
  gcm.seal(kNonce, kAad, kMsg.data(), kMsg.size(), ct.data(), tag);
  Bytes out(kMsg.size());
  for (size_t bit = 0; bit < ct.size() * 8; ++bit) {
    Bytes bad = ct;
    bad[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    CHECK_FALSE(gcm.open(kNonce, kAad, bad.data(), bad.size(), tag, out.data()));
  }
  for (size_t bit = 0; bit < sizeof tag * 8; ++bit) {
    std::uint8_t bad[crypto::kGcmTagSize];
    std::copy(tag, tag + sizeof tag, bad);
    bad[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    CHECK_FALSE(gcm.open(kNonce, kAad, ct.data(), ct.size(), bad, out.data()));
  }
  for (size_t bit = 0; bit < kAad.size() * 8; ++bit) {
    Bytes aad = kAad;
    aad[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    CHECK_FALSE(gcm.open(kNonce, aad, ct.data(), ct.size(), tag, out.data()));
  }
  for (size_t bit = 0; bit < kNonce.size() * 8; ++bit) {
    Bytes nonce = kNonce;
    nonce[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    CHECK_FALSE(gcm.open(nonce, kAad, ct.data(), ct.size(), tag, out.data()));
  }
  CHECK(gcm.open(kNonce, kAad, ct.data(), ct.size(), tag, out.data()));
  CHECK(out == kMsg);
}

TEST_CASE("Aes256Gcm refuses keys other than 32 bytes and nonces other than 12 bytes") {
  CHECK_THROWS_AS(crypto::Aes256Gcm(ByteView(kKey).first(16)), kms::Error);
  CHECK_THROWS_AS(crypto::Aes256Gcm(Bytes{}), kms::Error);
  crypto::Aes256Gcm gcm(kKey);
  std::uint8_t buf[4] = {1, 2, 3, 4}, tag[crypto::kGcmTagSize];
  CHECK_THROWS_AS(gcm.seal(ByteView(kNonce).first(8), {}, buf, sizeof buf, buf, tag), kms::Error);
  CHECK_THROWS_AS(gcm.seal(Bytes{}, {}, buf, sizeof buf, buf, tag), kms::Error);
  gcm.seal(kNonce, {}, buf, sizeof buf, buf, tag);
  Bytes longer = kNonce;
  longer.push_back(0);
  CHECK_FALSE(gcm.open(longer, {}, buf, sizeof buf, tag, buf));
}

// ---------------------------------------------------------------------------------------------
// HKDF-SHA256
// ---------------------------------------------------------------------------------------------

TEST_CASE("hkdf_sha256 passes every Wycheproof hkdf_sha256_test.json vector") {
  const nlohmann::json doc = load_vectors("hkdf_sha256_test.json");
  int valid = 0, invalid = 0;
  for (const auto& g : doc.at("testGroups")) {
    for (const auto& t : g.at("tests")) {
      CAPTURE(case_name(t));
      const Bytes ikm = unhex(t, "ikm"), salt = unhex(t, "salt"), info = unhex(t, "info");
      const size_t size = t.at("size").get<size_t>();
      if (t.at("result") == "valid") {
        ++valid;
        const SecureBytes okm = crypto::hkdf_sha256(ikm, salt, info, size);
        CHECK(crypto::to_hex(okm.view()) == t.at("okm").get<std::string>());
      } else {
        REQUIRE(t.at("result") == "invalid");
        ++invalid;
        CHECK_THROWS_AS((void)crypto::hkdf_sha256(ikm, salt, info, size), kms::Error);
      }
    }
  }
  MESSAGE("hkdf_sha256_test.json: " << valid << " valid, " << invalid << " invalid");
  CHECK(valid > 0);
  CHECK(invalid > 0);
  CHECK(valid + invalid == doc.at("numberOfTests").get<int>());
}

TEST_CASE("hkdf_sha256 matches RFC 5869 test case 1 and rejects length 0") {
  const Bytes ikm(22, 0x0b);
  const SecureBytes okm = crypto::hkdf_sha256(ikm, unhex("000102030405060708090a0b0c"),
                                              unhex("f0f1f2f3f4f5f6f7f8f9"), 42);
  CHECK(crypto::to_hex(okm.view()) ==
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  CHECK_THROWS_AS((void)crypto::hkdf_sha256(ikm, {}, {}, 0), kms::Error);
  CHECK(crypto::hkdf_sha256(ikm, {}, {}, 255 * 32).size() == 255 * 32);
  CHECK_THROWS_AS((void)crypto::hkdf_sha256(ikm, {}, {}, 255 * 32 + 1), kms::Error);
}

TEST_CASE("hkdf_sha256 derives the FORMAT.md §10.2 subkeys") {
  const Bytes mk = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  const Bytes salt = bytes_of("8d5a6c1e-3f2b-4a7d-9e01-23456789abcd");
  CHECK(
      crypto::to_hex(crypto::hkdf_sha256(mk, salt, bytes_of("kmsctl/v1/record-seal"), 32).view()) ==
      "d939199739af2e273709520c9897b434568d6347983ef82cf687ad09f5853f7d");
  CHECK(crypto::to_hex(crypto::hkdf_sha256(mk, salt, bytes_of("kmsctl/v1/audit-mac"), 32).view()) ==
        "2908e9f9797ac072d815a4e01dac4e40b460909d3f1466493604da968a7dbc9a");
}

TEST_CASE("aes_gcm_open opens the FORMAT.md §10.5 sealed master key under its AAD only") {
  const Bytes root = unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
  // "kmsctl-master-key-v1" || 0x00 || vault id || u64be(1)
  Bytes aad = unhex(
      "6b6d7363746c2d6d61737465722d6b65792d7631"
      "00"
      "38643561366331652d336632622d346137642d396530312d323334353637383961626364"
      "0000000000000001");
  CHECK(as_chars(ByteView(aad).first(20)) == "kmsctl-master-key-v1");
  const Bytes iv = unhex("a0a1a2a3a4a5a6a7a8a9aaab");
  const Bytes ct = unhex(
      "000e723358a5953776660cbd880c8489bd3b14a23b9d943ad8b99c201ccbcfc3"
      "55a67b9aec07e86924316d2ae87ec3ef");
  const auto mk = crypto::aes_gcm_open(root, iv, aad, ct);
  REQUIRE(mk.has_value());
  CHECK(crypto::to_hex(mk->view()) ==
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  aad.back() = 2;  // another root key generation
  CHECK_FALSE(crypto::aes_gcm_open(root, iv, aad, ct).has_value());
}

TEST_CASE("the FORMAT.md §10.5 master key sealed under an HMAC root key opens with its KEK") {
  const crypto::HmacSha256 root(
      unhex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"));
  const Bytes vault_id = bytes_of("8d5a6c1e-3f2b-4a7d-9e01-23456789abcd");
  const Bytes iv = unhex("a0a1a2a3a4a5a6a7a8a9aaab");
  // "kmsctl-master-kek-v2" || 0x00 || vault id || u64be(1) || iv: what the token MACs
  Bytes input = bytes_of("kmsctl-master-kek-v2");
  input.push_back(0);
  input.insert(input.end(), vault_id.begin(), vault_id.end());
  const Bytes gen = unhex("0000000000000001");
  input.insert(input.end(), gen.begin(), gen.end());
  input.insert(input.end(), iv.begin(), iv.end());
  const crypto::Digest kek = root.mac(input);
  CHECK(crypto::to_hex(ByteView(kek.data(), kek.size())) ==
        "abb325ae84a108747d7b12fbd3ef71d966bbc68d22db75e31a8c4832949a0969");
  Bytes aad = bytes_of("kmsctl-master-key-v1");
  aad.push_back(0);
  aad.insert(aad.end(), vault_id.begin(), vault_id.end());
  aad.insert(aad.end(), gen.begin(), gen.end());
  const Bytes ct = unhex(
      "9eeb74c41c1b3d786e50a89f7305e7cd8548ba10b31202b97a3895d47e22f801"
      "f0ddc402569907234aeffef2b61deeef");
  const auto mk = crypto::aes_gcm_open(ByteView(kek.data(), kek.size()), iv, aad, ct);
  REQUIRE(mk.has_value());
  CHECK(crypto::to_hex(mk->view()) ==
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  aad.back() = 2;  // another root key generation
  CHECK_FALSE(crypto::aes_gcm_open(ByteView(kek.data(), kek.size()), iv, aad, ct).has_value());
}

TEST_CASE("hkdf_sha256 separates purposes by info") {
  const SecureBytes a = crypto::hkdf_sha256(kKey, bytes_of("vault"), bytes_of("record"), 32);
  const SecureBytes b = crypto::hkdf_sha256(kKey, bytes_of("vault"), bytes_of("audit"), 32);
  CHECK_FALSE(crypto::equal(a.view(), b.view()));
}

// ---------------------------------------------------------------------------------------------
// HMAC-SHA256
// ---------------------------------------------------------------------------------------------

TEST_CASE("HmacSha256 passes every Wycheproof hmac_sha256_test.json vector") {
  const nlohmann::json doc = load_vectors("hmac_sha256_test.json");
  int valid = 0, invalid = 0, truncated = 0;
  for (const auto& g : doc.at("testGroups")) {
    const size_t tag_size = g.at("tagSize").get<size_t>() / 8;
    for (const auto& t : g.at("tests")) {
      CAPTURE(case_name(t));
      CAPTURE(tag_size);
      const Bytes key = unhex(t, "key"), msg = unhex(t, "msg"), tag = unhex(t, "tag");
      const crypto::HmacSha256 hmac(key);
      const crypto::Digest full = hmac.mac(msg);
      const bool is_valid = t.at("result") == "valid";
      REQUIRE((is_valid || t.at("result") == "invalid"));
      is_valid ? ++valid : ++invalid;
      if (tag_size == crypto::kSha256Size) {
        CHECK(hmac.verify(msg, tag) == is_valid);
        CHECK(crypto::equal(full, tag) == is_valid);
      } else {
        ++truncated;
        REQUIRE(tag.size() == tag_size);
        // A truncated tag is compared as a prefix of the full MAC ...
        CHECK(crypto::equal(ByteView(full).first(tag_size), tag) == is_valid);
        // ... and verify(), which takes only a full tag, never accepts it.
        CHECK_FALSE(hmac.verify(msg, tag));
      }
    }
  }
  MESSAGE("hmac_sha256_test.json: " << valid << " valid, " << invalid << " invalid (" << truncated
                                    << " with truncated tags)");
  CHECK(valid > 0);
  CHECK(invalid > 0);
  CHECK(truncated > 0);
  CHECK(valid + invalid == doc.at("numberOfTests").get<int>());
}

TEST_CASE("HmacSha256 verify rejects any flipped bit, a wrong key and a wrong message") {
  const crypto::HmacSha256 hmac(kKey);
  const crypto::Digest tag = hmac.mac(kMsg);
  CHECK(hmac.verify(kMsg, tag));
  for (size_t i = 0; i < tag.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      crypto::Digest bad = tag;
      bad[i] ^= static_cast<std::uint8_t>(1u << bit);
      CHECK_FALSE(hmac.verify(kMsg, bad));
    }
  }
  Bytes other_key = kKey;
  other_key[0] ^= 1;
  CHECK_FALSE(crypto::HmacSha256(other_key).verify(kMsg, tag));
  Bytes other_msg = kMsg;
  other_msg.back() ^= 1;
  CHECK_FALSE(hmac.verify(other_msg, tag));
  CHECK_FALSE(hmac.verify(kMsg, {}));
  // mac() is repeatable: the keyed state is not consumed.
  CHECK(hmac.mac(kMsg) == tag);
}

// ---------------------------------------------------------------------------------------------
// SHA-256
// ---------------------------------------------------------------------------------------------

TEST_CASE("sha256 matches the FIPS 180-2 examples") {
  CHECK(crypto::to_hex(crypto::sha256({})) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(crypto::to_hex(crypto::sha256(bytes_of("abc"))) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("Sha256 incremental equals one-shot for every split and after reset") {
  Bytes data(300);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 3);
  const crypto::Digest one_shot = crypto::sha256(data);
  crypto::Sha256 h;
  for (size_t split = 0; split <= data.size(); ++split) {
    h.reset();
    h.update(ByteView(data).first(split));
    h.update(ByteView(data).subspan(split));
    CAPTURE(split);
    CHECK(h.finish() == one_shot);
  }
  h.reset();
  for (std::uint8_t b : data) h.update(ByteView(&b, 1));
  CHECK(h.finish() == one_shot);
  crypto::Sha256 fresh;
  fresh.update(bytes_of("abc"));
  CHECK(crypto::to_hex(fresh.finish()) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---------------------------------------------------------------------------------------------
// equal, SecureBytes, random
// ---------------------------------------------------------------------------------------------

TEST_CASE("equal compares contents and is false when sizes differ") {
  const Bytes a = bytes_of("abcdef"), b = bytes_of("abcdef"), c = bytes_of("abcdeg");
  CHECK(crypto::equal(a, b));
  CHECK_FALSE(crypto::equal(a, c));
  CHECK_FALSE(crypto::equal(a, ByteView(a).first(5)));
  CHECK_FALSE(crypto::equal(ByteView(a).first(5), a));
  CHECK(crypto::equal({}, {}));
  CHECK_FALSE(crypto::equal({}, a));
  for (size_t i = 0; i < a.size(); ++i) {
    Bytes d = a;
    d[i] ^= 0x80;
    CHECK_FALSE(crypto::equal(a, d));
  }
}

TEST_CASE("SecureBytes copies its input and moves by stealing the buffer") {
  SecureBytes a{ByteView(kMsg)};
  REQUIRE(a.size() == kMsg.size());
  CHECK(same(a.view(), kMsg));
  CHECK(a.chars() == as_chars(kMsg));
  const std::uint8_t* buf = a.data();

  SecureBytes b(std::move(a));
  CHECK(b.data() == buf);
  CHECK(same(b.view(), kMsg));
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  CHECK(a.data() == nullptr);

  SecureBytes c(4);
  c = std::move(b);
  CHECK(c.data() == buf);
  CHECK(same(c.view(), kMsg));
  CHECK(b.empty());  // NOLINT(bugprone-use-after-move)
  CHECK(b.size() == 0);

  SecureBytes& alias = c;
  c = std::move(alias);  // self-move keeps the value
  CHECK(same(c.view(), kMsg));

  SecureBytes empty;
  CHECK(empty.empty());
  CHECK(empty.view().empty());
  SecureBytes zero(size_t{0});
  CHECK(zero.empty());
}

TEST_CASE("SecureBytes truncate shrinks the view and wipes the hidden tail") {
  SecureBytes s{ByteView(kMsg)};
  const std::uint8_t* buf = s.data();
  s.truncate(10);
  CHECK(s.size() == 10);
  CHECK(s.data() == buf);
  CHECK(same(s.view(), ByteView(kMsg).first(10)));
  // The bytes past the new size are still in the allocation and must be zero.
  bool wiped = true;
  for (size_t i = 10; i < kMsg.size(); ++i) wiped = wiped && buf[i] == 0;
  CHECK(wiped);
  s.truncate(20);  // growing is not possible: a no-op
  CHECK(s.size() == 10);
  s.truncate(0);
  CHECK(s.empty());
}

namespace {

// Contents that tell buffer `k` apart from every other one and each position from the next.
void fill_pattern(std::span<std::uint8_t> s, size_t k) {
  for (size_t i = 0; i < s.size(); ++i)
    s[i] = static_cast<std::uint8_t>((k * 131 + i * 7 + 1) & 0xff);
}
bool has_pattern(ByteView s, size_t k) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != static_cast<std::uint8_t>((k * 131 + i * 7 + 1) & 0xff)) return false;
  }
  return true;
}

// The process's mappings (/proc/self/maps): [start, end) and whether they are readable.
struct Mapping {
  std::uintptr_t start = 0, end = 0;
  bool readable = false;
};
std::vector<Mapping> mappings() {
  std::ifstream in("/proc/self/maps");
  std::vector<Mapping> out;
  for (std::string line; std::getline(in, line);) {
    Mapping m;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %4s", &m.start, &m.end, perms) == 3) {
      m.readable = perms[0] == 'r';
      out.push_back(m);
    }
  }
  return out;
}
size_t mapping_count() { return mappings().size(); }

// How many mappings `count` live SecureBytes of `size` bytes add to the process.
size_t mappings_added(size_t size, size_t count) {
  std::vector<SecureBytes> live;
  live.reserve(count);
  const size_t before = mapping_count();
  for (size_t k = 0; k < count; ++k) live.emplace_back(size);
  const size_t after = mapping_count();
  return after > before ? after - before : 0;
}

}  // namespace

// A sodium_malloc region of its own is four mappings (a page, a guard page, the locked pages, a
// guard page), nine system calls to make and free. Up to 512 bytes, SecureBytes take a slot of
// one shared region instead (src/crypto/secure.cpp).
TEST_CASE("SecureBytes of up to 512 bytes share one region; larger ones get a region each") {
  const SecureBytes warm(32);  // the shared region is made once, by the first small one
  CHECK(mappings_added(32, 20) < 10);
  CHECK(mappings_added(512, 20) < 10);
  CHECK(mappings_added(513, 20) >= 2 * 20);
  CHECK(mappings_added(4096, 20) >= 2 * 20);
  // Both kinds hold what is written into them.
  SecureBytes a(32), b(4096);
  fill_pattern(a.span(), 1);
  fill_pattern(b.span(), 2);
  CHECK(has_pattern(a.view(), 1));
  CHECK(has_pattern(b.view(), 2));
}

TEST_CASE("a small SecureBytes is wiped when freed, though its shared region stays mapped") {
  const std::uint8_t* p = nullptr;
  {
    SecureBytes key(32);
    fill_pattern(key.span(), 3);
    p = key.data();
  }
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  const auto maps = mappings();
  const bool mapped = std::any_of(maps.begin(), maps.end(), [&](const Mapping& m) {
    return m.readable && m.start <= at && at + 32 <= m.end;
  });
  REQUIRE_MESSAGE(mapped, "a freed 32-byte SecureBytes was unmapped: it had no shared slot");
  bool wiped = true;
  for (size_t i = 0; i < 32; ++i) wiped = wiped && p[i] == 0;
  CHECK(wiped);
}

TEST_CASE("hundreds of live SecureBytes, more than the shared region's slots, all work") {
  for (const size_t size : {size_t{1024}, size_t{512}, size_t{256}, size_t{32}}) {
    CAPTURE(size);
    constexpr size_t kCount = 300;  // 300 x 1024 bytes: far more than a 32 KiB shared region
    std::vector<SecureBytes> live;
    live.reserve(kCount);
    for (size_t k = 0; k < kCount; ++k) {
      live.emplace_back(size);
      REQUIRE(live.back().size() == size);
      REQUIRE(live.back().data() != nullptr);
      fill_pattern(live.back().span(), k);
    }
    // Every buffer is its own: none overlaps another or was overwritten by a later one.
    std::vector<std::pair<const std::uint8_t*, const std::uint8_t*>> spans;
    for (size_t k = 0; k < kCount; ++k) {
      spans.emplace_back(live[k].data(), live[k].data() + size);
      CHECK(has_pattern(live[k].view(), k));
    }
    std::sort(spans.begin(), spans.end());
    bool disjoint = true;
    for (size_t k = 1; k < spans.size(); ++k)
      disjoint = disjoint && spans[k - 1].second <= spans[k].first;
    CHECK(disjoint);
    // Moves keep the buffer, whichever way it was allocated; move-assignment frees the old one.
    std::vector<SecureBytes> moved;
    moved.reserve(kCount);
    for (size_t k = 0; k < kCount; ++k) {
      const std::uint8_t* buf = live[k].data();
      moved.emplace_back(std::move(live[k]));
      CHECK(moved.back().data() == buf);
      CHECK(live[k].empty());  // NOLINT(bugprone-use-after-move)
    }
    // Early buffers (the shared slots) take late ones (regions of their own), freeing theirs...
    for (size_t k = 0; k < 50; ++k) moved[k] = std::move(moved[kCount - 1 - k]);
    // ...and late ones take early ones.
    for (size_t k = 50; k < 100; ++k) moved[kCount - 1 - k] = std::move(moved[k]);
    for (size_t k = 0; k < kCount; ++k) {
      CAPTURE(k);
      if (k < 50) {
        CHECK(has_pattern(moved[k].view(), kCount - 1 - k));
      } else if (k < 100 || k >= kCount - 50) {
        CHECK(moved[k].empty());
      } else if (k >= kCount - 100) {
        CHECK(has_pattern(moved[k].view(), kCount - 1 - k));
      } else {
        CHECK(has_pattern(moved[k].view(), k));
      }
    }
    // Freed buffers are reusable: a new round of allocations works and holds its data.
    moved.clear();
    live.clear();
    for (size_t k = 0; k < kCount; ++k) {
      live.emplace_back(size);
      fill_pattern(live.back().span(), k + 1000);
    }
    for (size_t k = 0; k < kCount; ++k) CHECK(has_pattern(live[k].view(), k + 1000));
  }
  // Every slot was given back: small secrets share the region again.
  CHECK(mappings_added(32, 48) < 10);
}

TEST_CASE("random_bytes and random_secret return the requested size and differ each call") {
  CHECK(crypto::random_bytes(0).empty());
  const Bytes a = crypto::random_bytes(32), b = crypto::random_bytes(32);
  CHECK(a.size() == 32);
  CHECK_FALSE(crypto::equal(a, b));
  const SecureBytes s = crypto::random_secret(32), t = crypto::random_secret(32);
  CHECK(s.size() == 32);
  CHECK_FALSE(crypto::equal(s.view(), t.view()));
}

// ---------------------------------------------------------------------------------------------
// uuid, hex, base64
// ---------------------------------------------------------------------------------------------

TEST_CASE("uuid_v4 is canonical lower-case text with version 4 and RFC 4122 variant bits") {
  const std::regex form("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string u = crypto::uuid_v4();
    CAPTURE(u);
    CHECK(u.size() == 36);
    CHECK(std::regex_match(u, form));
    seen.insert(u);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("to_hex and from_hex round-trip every length and byte value") {
  Bytes all(256);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i);
  for (size_t n = 0; n <= all.size(); n += 17) {
    const ByteView v = ByteView(all).first(n);
    const std::string h = crypto::to_hex(v);
    CHECK(h.size() == 2 * n);
    const auto back = crypto::from_hex(h);
    REQUIRE(back.has_value());
    CHECK(same(*back, v));
  }
  CHECK(crypto::to_hex(unhex("00ff10ab")) == "00ff10ab");
  const auto upper = crypto::from_hex("00FF10AB");
  REQUIRE(upper.has_value());
  CHECK(crypto::to_hex(*upper) == "00ff10ab");
  CHECK(crypto::from_hex("").has_value());
}

TEST_CASE("from_hex rejects odd length, non-hex characters, separators and prefixes") {
  for (const char* bad : {"0", "abc", "zz", "0g", "g0", "00 ff", " 00", "00 ", "0x00", "00:ff",
                          "00\n", "-1", "\xff\xff"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(crypto::from_hex(bad).has_value());
  }
}

TEST_CASE("to_base64 matches RFC 4648 and from_base64 round-trips") {
  const std::pair<const char*, const char*> rfc[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& pair : rfc) {
    const auto& [plain, b64] = pair;
    CAPTURE(pair.first);
    CHECK(crypto::to_base64(bytes_of(plain)) == b64);
    const auto back = crypto::from_base64(b64);
    REQUIRE(back.has_value());
    CHECK(same(*back, bytes_of(plain)));
  }
  Bytes all(256);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(255 - i);
  for (size_t n = 0; n <= all.size(); ++n) {
    const auto back = crypto::from_base64(crypto::to_base64(ByteView(all).first(n)));
    REQUIRE(back.has_value());
    CHECK(same(*back, ByteView(all).first(n)));
  }
}

TEST_CASE("from_base64 rejects bad padding, foreign alphabets, junk and non-canonical input") {
  for (const char* bad : {"Zg", "Zg=", "Zg===", "Z", "Zm9v=", "Zm9v====", "Zm9v!", "Zm9-", "Zm9_",
                          "Zm 9v!", "Zm9vYmFy\x01", "Zh==", "Zm9=", "=Zm9"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(crypto::from_base64(bad).has_value());
  }
}
