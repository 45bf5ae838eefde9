// Unit tests of kms::crypto::sm: the example vectors of the SM3, SM4 and SM2 standards, vectors
// made by the openssl command line (OpenSSL 3.0) and kept here as fixed bytes, the FORMAT.md
// vector of SM4 authenticated encryption, tampering and misuse, and agreement with the SM2 of
// kms/asymmetric.hpp.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "vectors.hpp"
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include "crypto/sm.hpp"
#include "kms/asymmetric.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/key_specs.hpp"
#include "kms/secure.hpp"

using namespace kms;
namespace sm = kms::crypto::sm;

using kms::test::unhex;

namespace {

const bool kSkippedLegacyTables = kms::test::skip_legacy_tables_if_asked();

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes concat(ByteView a, ByteView b) {
  Bytes out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::string hex(ByteView b) { return crypto::to_hex(b); }

Code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("no kms::Error was thrown");
  return Code::failed;
}

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

// ---- The SM2 example on the recommended curve sm2p256v1 ----------------------------------
// GM/T 0003.5-2012 (SM2 part 5, parameter definition), Annex A (signature) and Annex C
// (encryption); the same examples are in GB/T 32918.5. The examples of GB/T 32918.2/.4 and
// of draft-shen-sm2-ecdsa-02 use a test curve (p = 8542D69E...) that is not sm2p256v1, so they
// do not apply. OpenSSL's own test/sm2_internal_test.c checks these values too.
constexpr std::string_view kStdD =
    "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
constexpr std::string_view kStdPoint =
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13";
constexpr std::string_view kStdSignedMessage = "message digest";
// ID_A is the default identifier of GM/T 0009, 1234567812345678.
constexpr std::string_view kStdZ =
    "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3";
constexpr std::string_view kStdE =
    "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640";
// (r, s) made with k = 59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21, in DER
// (both have their top bit set, so each INTEGER takes a leading 00).
constexpr std::string_view kStdSignature =
    "3046"
    "022100F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "022100B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA";
constexpr std::string_view kStdEncryptedMessage = "encryption standard";
// C1 = (x1, y1), C3, C2 of Annex C, in the ASN.1 of GM/T 0009 §7.2.
constexpr std::string_view kStdCiphertext =
    "307C"
    "022004EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
    "022100E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
    "042059983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
    "041321886CA989CA9C7D58087307CA93092D651EFA";

// The standard's private key as a PKCS#8 PrivateKeyInfo without the public key, written out by
// hand: SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, sm2p256v1 }, OCTET STRING {
// ECPrivateKey: SEQUENCE { INTEGER 1, OCTET STRING d } } }. OpenSSL computes the public key.
Bytes std_private_pkcs8() {
  return concat(unhex("3041020100301306072a8648ce3d020106082a811ccf5501822d"
                      "0427302502010104"
                      "20"),
                unhex(kStdD));
}

// ---- Made by the openssl command line of OpenSSL 3.0 -----------------------------------
//   openssl genpkey -algorithm SM2 -out key.pem
//   openssl pkcs8 -topk8 -nocrypt -in key.pem -outform DER            (kCliKey)
//   openssl pkey -in key.pem -pubout -outform DER                     (kCliPublic)
//   openssl pkeyutl -sign -rawin -digest sm3 -inkey key.pem -in m1
//       -pkeyopt distid:1234567812345678                              (kCliSignature)
//   openssl pkeyutl -sign -rawin -digest sm3 -inkey key.pem -in m1    (kCliSignatureEmptyId:
//       OpenSSL 3.0's default identifier is empty)
//   openssl pkeyutl -encrypt -pubin -inkey pub.pem -in m2             (kCliCiphertext)
constexpr std::string_view kCliKey =
    "308187020100301306072a8648ce3d020106082a811ccf5501822d046d306b0201010420c45c9273ff247d714b8d"
    "2677073b02e3f8e56e89549801b1ddf8e6f12b3f9ec3a14403420004422f8773fd736f2bd0e845061061f5cad6"
    "44ade23bc88b5035a5b8252aad122d5756174d2ee860720345b89ff729e7d07d92a69d7e61e1e17a6ad38a79ee"
    "52bd";
constexpr std::string_view kCliPublic =
    "3059301306072a8648ce3d020106082a811ccf5501822d03420004422f8773fd736f2bd0e845061061f5cad644"
    "ade23bc88b5035a5b8252aad122d5756174d2ee860720345b89ff729e7d07d92a69d7e61e1e17a6ad38a79ee52"
    "bd";
constexpr std::string_view kCliSignedMessage = "signed by the openssl command line";
constexpr std::string_view kCliSignature =
    "3046022100998219780ccd96efad360185d4bcc5252e3ca628e1158e5757668cecc27fa948022100ba7e8c3fd1"
    "ec56a21bd027cf96175ece23023c55fbd0cc9ea48a2ce6cf3adc5b";
constexpr std::string_view kCliSignatureEmptyId =
    "3045022100c1191bf5227dcacdcb1f706fe521efef358167e386e47f473585fa8445e20c7302207549a8da5b31"
    "acd59f73da059f643c6dac320d8fb22e26c484a1e9050d445e46";
constexpr std::string_view kCliEncryptedMessage = "encrypted by the openssl command line";
constexpr std::string_view kCliCiphertext =
    "30818d022012bf761380daece7edcf1177713309e93077e4ed0d0f5a8c959c82581282357b02206c26c6e67b2a"
    "98eb044248bd27b51c5cac480adad570a94cd2fe0231fde9fe050420ebc5061347a2247e6d001cc7175a70706d"
    "4c74decaf634427ffff9e246132ed4042599ea200ade2356814abded5a508009bbf1c29eef5831f03c1c7b2d10"
    "1cdbe53fad14e6dc70";

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

// ---------------------------------------------------------------------------------------------
// SM2
// ---------------------------------------------------------------------------------------------

TEST_CASE("the SM2 example of GM/T 0003.5 Annex A: Z_A, e, and the signature verifies") {
  const Bytes spki = sm::sm2_public_key_from_point(unhex(kStdPoint));
  CHECK(hex(sm::sm2_public_point(spki)) == hex(unhex(kStdPoint)));
  CHECK(hex(sm::sm2_z(spki)) == hex(unhex(kStdZ)));
  const Bytes msg = bytes_of(kStdSignedMessage);
  CHECK(hex(sm::sm2_message_digest(spki, msg)) == hex(unhex(kStdE)));
  const Bytes sig = unhex(kStdSignature);
  CHECK(sm::sm2_verify(spki, msg, sig));
  CHECK(sm::sm2_verify_digest(spki, unhex(kStdE), sig));
  CHECK_FALSE(sm::sm2_verify(spki, bytes_of("message digesT"), sig));
  CHECK_FALSE(sm::sm2_verify_digest(spki, sm::sm3(msg), sig));  // e is not SM3(M) alone
}

TEST_CASE("the standard's private key gives its public key, signs, and decrypts Annex C") {
  const SecureBytes key = sm::sm2_private_key_from_der(std_private_pkcs8());
  // Given without its public key, the key comes back as sm2_generate_key writes one: with the
  // public key (the ECPrivateKey's [1]), here the standard's point.
  const Bytes full = concat(concat(unhex("308187020100301306072a8648ce3d020106082a811ccf5501822d"
                                         "046d306b0201010420"),
                                   unhex(kStdD)),
                            concat(unhex("a144034200"), unhex(kStdPoint)));
  CHECK(hex(key.view()) == hex(full));
  const Bytes spki = sm::sm2_public_key(key.view());
  CHECK(hex(spki) == hex(sm::sm2_public_key_from_point(unhex(kStdPoint))));
  const Bytes msg = bytes_of(kStdSignedMessage);
  CHECK(sm::sm2_verify(spki, msg, sm::sm2_sign(key.view(), msg)));
  const auto plain = sm::sm2_decrypt(key.view(), unhex(kStdCiphertext));
  REQUIRE(plain.has_value());
  CHECK(std::string(plain->chars()) == kStdEncryptedMessage);
}

TEST_CASE("signatures and ciphertexts of the openssl command line pass, with the default id only") {
  const Bytes spki = unhex(kCliPublic);
  const SecureBytes key = sm::sm2_private_key_from_der(unhex(kCliKey));
  CHECK(hex(sm::sm2_public_key(key.view())) == hex(spki));
  const Bytes msg = bytes_of(kCliSignedMessage);
  CHECK(sm::sm2_verify(spki, msg, unhex(kCliSignature)));
  // Signed with OpenSSL 3.0's empty identifier: Z_A differs, so it does not verify here.
  CHECK_FALSE(sm::sm2_verify(spki, msg, unhex(kCliSignatureEmptyId)));
  const auto plain = sm::sm2_decrypt(key.view(), unhex(kCliCiphertext));
  REQUIRE(plain.has_value());
  CHECK(std::string(plain->chars()) == kCliEncryptedMessage);
}

TEST_CASE("sm2_generate_key gives a PKCS#8 key whose signatures and ciphertexts round-trip") {
  const SecureBytes key = sm::sm2_generate_key();
  // PrivateKeyInfo: SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, sm2p256v1 }, ... }.
  CHECK(hex(key.view().first(27)) == "308187020100301306072a8648ce3d020106082a811ccf5501822d");
  const Bytes spki = sm::sm2_public_key(key.view());
  CHECK(spki.size() == 91);
  CHECK(hex(ByteView(spki).first(27)) == "3059301306072a8648ce3d020106082a811ccf5501822d03420004");
  CHECK(hex(sm::sm2_private_key_from_der(key.view()).view()) == hex(key.view()));
  const Bytes msg = bytes_of("a message");
  const Bytes sig1 = sm::sm2_sign(key.view(), msg), sig2 = sm::sm2_sign(key.view(), msg);
  CHECK(sig1.size() <= 72);
  CHECK(hex(sig1) != hex(sig2));  // a fresh k each time
  CHECK(sm::sm2_verify(spki, msg, sig1));
  CHECK(sm::sm2_verify(spki, msg, sig2));
  CHECK(sm::sm2_verify(spki, {}, sm::sm2_sign(key.view(), {})));
  // The message form and the digest form are one signature scheme.
  const auto e = sm::sm2_message_digest(spki, msg);
  CHECK(sm::sm2_verify_digest(spki, e, sig1));
  CHECK(sm::sm2_verify(spki, msg, sm::sm2_sign_digest(key.view(), e)));
  // Another key's public key verifies nothing of this one.
  const Bytes other = sm::sm2_public_key(sm::sm2_generate_key().view());
  CHECK_FALSE(sm::sm2_verify(other, msg, sig1));
  for (size_t n : {1, 16, 100, 5000}) {
    CAPTURE(n);
    const Bytes pt = crypto::random_bytes(n);
    const Bytes ct = sm::sm2_encrypt(spki, pt);
    CHECK(ct.size() > n + 96);
    const auto back = sm::sm2_decrypt(key.view(), ct);
    REQUIRE(back.has_value());
    CHECK(hex(back->view()) == hex(pt));
  }
  CHECK(hex(sm::sm2_generate_key().view()) != hex(key.view()));
}

TEST_CASE("sm2_verify is false for every flipped bit, truncation or re-encoding of a signature") {
  const Bytes spki = unhex(kCliPublic);
  const Bytes msg = bytes_of(kCliSignedMessage);
  const Bytes sig = unhex(kCliSignature);
  for (size_t i = 0; i < sig.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = sig;
      bad[i] ^= static_cast<std::uint8_t>(1u << bit);
      CAPTURE(i);
      CHECK_FALSE(sm::sm2_verify(spki, msg, bad));
    }
  }
  for (size_t n = 0; n < sig.size(); ++n) {
    CHECK_FALSE(sm::sm2_verify(spki, msg, ByteView(sig).first(n)));
  }
  CHECK_FALSE(sm::sm2_verify(spki, msg, concat(sig, Bytes{0})));
  // The same (r, s) with a long-form length (BER, not DER).
  Bytes ber = unhex("308146");
  ber.insert(ber.end(), sig.begin() + 2, sig.end());
  CHECK_FALSE(sm::sm2_verify(spki, msg, ber));
  // (s, r) instead of (r, s).
  Bytes swapped = unhex("3046");
  swapped.insert(swapped.end(), sig.begin() + 37, sig.end());
  swapped.insert(swapped.end(), sig.begin() + 2, sig.begin() + 37);
  CHECK_FALSE(sm::sm2_verify(spki, msg, swapped));
  CHECK_FALSE(sm::sm2_verify_digest(spki, sm::sm2_message_digest(spki, msg), ber));
  CHECK_FALSE(sm::sm2_verify_digest(spki, sm::sm2_message_digest(spki, msg), Bytes{}));
}

TEST_CASE("sm2_decrypt is nullopt for every flipped bit, truncation or extension") {
  const SecureBytes key = sm::sm2_private_key_from_der(unhex(kCliKey));
  const Bytes ct = unhex(kCliCiphertext);
  int rejected = 0, tried = 0;
  for (size_t i = 0; i < ct.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = ct;
      bad[i] ^= static_cast<std::uint8_t>(1u << bit);
      ++tried;
      if (!sm::sm2_decrypt(key.view(), bad)) ++rejected;
    }
  }
  CHECK(rejected == tried);
  for (size_t n = 0; n < ct.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(sm::sm2_decrypt(key.view(), ByteView(ct).first(n)).has_value());
  }
  CHECK_FALSE(sm::sm2_decrypt(key.view(), concat(ct, Bytes{0})).has_value());
  // Another key does not decrypt it.
  CHECK_FALSE(sm::sm2_decrypt(sm::sm2_generate_key().view(), ct).has_value());
}

TEST_CASE("SM2 key parsing: other keys are Code::usage, non-keys and bad pairs Code::integrity") {
  // A P-256 key pair (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256, then
  // openssl pkcs8 -topk8 -nocrypt and openssl pkey -pubout, in DER).
  const Bytes p256_pkcs8 = unhex(
      "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420978706d763d405db"
      "d142384596e570cc5eb4de44ccdcc77bb196167cc0dae285a14403420004c8eb24e41f35db9c413ca71a73a388"
      "1ceb27b6100ce330025823b26ae2f9e6d80f7685eacf0e468e6eb1d742ca42e1c7814f3cdb87e0a0c3ca590b3c"
      "3dfb1c12");
  const Bytes p256_spki = unhex(
      "3059301306072a8648ce3d020106082a8648ce3d03010703420004c8eb24e41f35db9c413ca71a73a3881ceb27"
      "b6100ce330025823b26ae2f9e6d80f7685eacf0e468e6eb1d742ca42e1c7814f3cdb87e0a0c3ca590b3c3dfb1c"
      "12");
  CHECK(code_of([&] { (void)sm::sm2_public_point(p256_spki); }) == Code::usage);
  CHECK(code_of([&] { (void)sm::sm2_private_key_from_der(p256_pkcs8); }) == Code::usage);
  const Bytes spki = unhex(kCliPublic);
  const Bytes pkcs8 = unhex(kCliKey);
  CHECK(code_of([&] { (void)sm::sm2_public_key(spki); }) == Code::integrity);
  CHECK(code_of([&] { (void)sm::sm2_verify(pkcs8, {}, {}); }) == Code::integrity);
  CHECK(code_of([&] { (void)sm::sm2_sign({}, {}); }) == Code::integrity);
  CHECK(code_of([&] { (void)sm::sm2_public_key_pem(concat(spki, Bytes{0})); }) == Code::integrity);
  CHECK(code_of([&] { (void)sm::sm2_sign(concat(pkcs8, Bytes{0}), {}); }) == Code::integrity);
  CHECK(code_of([&] { (void)sm::sm2_sign(ByteView(pkcs8).first(pkcs8.size() - 1), {}); }) ==
        Code::integrity);
  // A key pair whose public key is another key's: found by the check of the pair.
  Bytes mismatched = pkcs8;
  const Bytes std_point = unhex(kStdPoint);
  std::copy(std_point.begin(), std_point.end(), mismatched.end() - 65);
  CHECK(code_of([&] { (void)sm::sm2_private_key_from_der(mismatched); }) == Code::integrity);
  // A scalar out of range: 0, and n - 1 (SM2 allows 1..n-2).
  Bytes zero = std_private_pkcs8();
  std::fill(zero.end() - 32, zero.end(), std::uint8_t{0});
  CHECK(code_of([&] { (void)sm::sm2_private_key_from_der(zero); }) == Code::integrity);
  Bytes n_minus_1 = std_private_pkcs8();
  const Bytes n1 = unhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54122");
  std::copy(n1.begin(), n1.end(), n_minus_1.end() - 32);
  CHECK(code_of([&] { (void)sm::sm2_private_key_from_der(n_minus_1); }) == Code::integrity);
  // Points: off the curve, compressed, the wrong size.
  Bytes off = std_point;
  off.back() ^= 1;
  CHECK(code_of([&] { (void)sm::sm2_public_key_from_point(off); }) == Code::integrity);
  CHECK(code_of([&] { (void)sm::sm2_public_key_from_point(ByteView(std_point).first(33)); }) ==
        Code::usage);
  Bytes compressed(std_point.begin(), std_point.begin() + 33);
  compressed[0] = 0x03;
  CHECK(code_of([&] { (void)sm::sm2_public_key_from_point(compressed); }) == Code::usage);
  // Digests other than 32 bytes.
  const SecureBytes key = sm::sm2_private_key_from_der(pkcs8);
  CHECK(code_of([&] { (void)sm::sm2_sign_digest(key.view(), Bytes(31)); }) == Code::usage);
  CHECK(code_of([&] { (void)sm::sm2_verify_digest(spki, Bytes(33), Bytes(70)); }) == Code::usage);
  CHECK(code_of([&] { (void)sm::sm2_encrypt(spki, {}); }) == Code::usage);
}

TEST_CASE("sm2_public_key_pem is the SubjectPublicKeyInfo in PEM") {
  const Bytes spki = unhex(kCliPublic);
  const std::string pem = sm::sm2_public_key_pem(spki);
  const std::string begin = "-----BEGIN PUBLIC KEY-----\n", end = "-----END PUBLIC KEY-----\n";
  REQUIRE(pem.size() > begin.size() + end.size());
  CHECK(pem.substr(0, begin.size()) == begin);
  CHECK(pem.substr(pem.size() - end.size()) == end);
  std::string body = pem.substr(begin.size(), pem.size() - begin.size() - end.size());
  CHECK(body.find('\n') == 64);  // lines of 64 characters
  body.erase(std::remove(body.begin(), body.end(), '\n'), body.end());
  const auto der = crypto::from_base64(body);
  REQUIRE(der.has_value());
  CHECK(hex(*der) == hex(spki));
}

// ---------------------------------------------------------------------------------------------
// Agreement with kms/asymmetric.hpp, whose SM2DSA and SM2PKE are OpenSSL's too
// ---------------------------------------------------------------------------------------------

TEST_CASE("SM2 here and in kms/asymmetric.hpp: one key format, one identifier, one ciphertext") {
  const SecureBytes theirs = crypto::generate_key_material(KeySpec::ec_sm2);
  const SecureBytes ours = sm::sm2_generate_key();
  for (const SecureBytes* key : {&theirs, &ours}) {
    const Bytes spki = sm::sm2_public_key(key->view());
    CHECK(hex(crypto::public_key_of(key->view())) == hex(spki));
    CHECK(crypto::public_key_spec(spki) == KeySpec::ec_sm2);
    CHECK(crypto::public_key_pem(spki) == sm::sm2_public_key_pem(spki));
    const Bytes msg = bytes_of("one message, two implementations");
    const Bytes their_sig = crypto::sign(key->view(), SigningAlgorithm::sm2dsa, msg, false);
    const Bytes our_sig = sm::sm2_sign(key->view(), msg);
    CHECK(sm::sm2_verify(spki, msg, their_sig));
    CHECK(crypto::verify(spki, SigningAlgorithm::sm2dsa, msg, false, our_sig));
    const Bytes pt = bytes_of("one plaintext, two implementations");
    const auto a = crypto::private_decrypt(key->view(), EncryptionAlgorithm::sm2pke,
                                           sm::sm2_encrypt(spki, pt));
    const auto b =
        sm::sm2_decrypt(key->view(), crypto::public_encrypt(spki, EncryptionAlgorithm::sm2pke, pt));
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(hex(a->view()) == hex(pt));
    CHECK(hex(b->view()) == hex(pt));
  }
  // The standard's signature, verified by both.
  const Bytes spki = sm::sm2_public_key_from_point(unhex(kStdPoint));
  CHECK(crypto::verify(spki, SigningAlgorithm::sm2dsa, bytes_of(kStdSignedMessage), false,
                       unhex(kStdSignature)));
}
