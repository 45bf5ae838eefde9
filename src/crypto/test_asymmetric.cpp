// Key pairs, signatures, public-key encryption and HMAC of every key spec (kms/asymmetric.hpp).
#include <algorithm>

#include <doctest/doctest.h>

#include "kms/asymmetric.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

using namespace kms;

namespace {

Bytes flip(Bytes b, std::size_t i) {
  b[i % b.size()] ^= 0x01;
  return b;
}

}  // namespace

TEST_CASE("every signing spec signs raw messages and digests that verify, and nothing else") {
  const Bytes msg(100, 0x61);
  for (const KeySpecInfo& info : key_specs()) {
    const auto signs = [&](const SigningAlgorithmInfo& a) {
      return spec_signs_with(info.spec, a.algorithm);
    };
    if (std::ranges::none_of(signing_algorithms(), signs)) continue;
    CAPTURE(info.name);
    // The spec's two key pairs serve every algorithm of the spec: generating RSA-4096 keys is
    // slow (the more so under a sanitizer), and the checks do not need a key per algorithm.
    const SecureBytes priv = crypto::generate_key_material(info.spec);
    const Bytes pub = crypto::public_key_of(priv.view());
    CHECK(crypto::public_key_spec(pub) == info.spec);
    const Bytes other = crypto::public_key_of(crypto::generate_key_material(info.spec).view());
    for (const SigningAlgorithmInfo& a : signing_algorithms()) {
      if (!signs(a)) continue;
      CAPTURE(a.name);
      const Bytes sig = crypto::sign(priv.view(), a.algorithm, msg, false);
      CHECK(crypto::verify(pub, a.algorithm, msg, false, sig));
      CHECK_FALSE(crypto::verify(pub, a.algorithm, flip(msg, 7), false, sig));
      CHECK_FALSE(crypto::verify(pub, a.algorithm, msg, false, flip(sig, sig.size() / 2)));
      CHECK_FALSE(crypto::verify(other, a.algorithm, msg, false, sig));
      if (a.digest_size == 0) {
        CHECK_THROWS_AS(crypto::sign(priv.view(), a.algorithm, Bytes(32), true), Error);
        continue;
      }
      // A signature of the digest is a signature of the message.
      const crypto::Digest sha = crypto::sha256(msg);
      const Bytes digest = a.digest_size == 32 ? Bytes(sha.begin(), sha.end()) : Bytes();
      if (!digest.empty()) {
        const Bytes dsig = crypto::sign(priv.view(), a.algorithm, digest, true);
        CHECK(crypto::verify(pub, a.algorithm, msg, false, dsig));
        CHECK(crypto::verify(pub, a.algorithm, digest, true, sig));
      }
      CHECK_THROWS_AS(crypto::sign(priv.view(), a.algorithm, Bytes(a.digest_size + 1), true),
                      Error);
    }
  }
}

TEST_CASE("a key refuses a signing algorithm of another spec, and verify says false") {
  const SecureBytes ed = crypto::generate_key_material(KeySpec::ed25519);
  CHECK_THROWS_AS(crypto::sign(ed.view(), SigningAlgorithm::ecdsa_sha_256, Bytes(3), false), Error);
  const SecureBytes p256 = crypto::generate_key_material(KeySpec::ec_p256);
  const Bytes sig = crypto::sign(p256.view(), SigningAlgorithm::ecdsa_sha_256, Bytes(3), false);
  CHECK_FALSE(crypto::verify(crypto::public_key_of(p256.view()), SigningAlgorithm::ecdsa_sha_384,
                             Bytes(3), false, sig));
  CHECK_FALSE(crypto::verify(crypto::public_key_of(ed.view()), SigningAlgorithm::ecdsa_sha_256,
                             Bytes(3), false, sig));
}

TEST_CASE("a raw message longer than 4096 bytes is refused; 4096 is signed") {
  const SecureBytes k = crypto::generate_key_material(KeySpec::ec_p256);
  CHECK_NOTHROW(crypto::sign(k.view(), SigningAlgorithm::ecdsa_sha_256, Bytes(4096), false));
  CHECK_THROWS_AS(crypto::sign(k.view(), SigningAlgorithm::ecdsa_sha_256, Bytes(4097), false),
                  Error);
}

TEST_CASE("RSA-OAEP-SHA-256 round-trips up to the spec's limit and refuses beyond it") {
  const SecureBytes k = crypto::generate_key_material(KeySpec::rsa_2048);
  const Bytes pub = crypto::public_key_of(k.view());
  const auto a = EncryptionAlgorithm::rsaes_oaep_sha_256;
  const Bytes pt(190, 0x42);
  const Bytes ct = crypto::public_encrypt(pub, a, pt);
  CHECK(ct.size() == 256);
  const auto back = crypto::private_decrypt(k.view(), a, ct);
  REQUIRE(back);
  CHECK(Bytes(back->view().begin(), back->view().end()) == pt);
  CHECK_FALSE(crypto::private_decrypt(k.view(), a, flip(ct, 100)));
  CHECK_THROWS_AS(crypto::public_encrypt(pub, a, Bytes(191)), Error);
  CHECK_THROWS_AS(crypto::public_encrypt(pub, EncryptionAlgorithm::sm2pke, pt), Error);
}

TEST_CASE("SM2 encrypts and signs with the GM/T 0009 distinguishing id") {
  const SecureBytes k = crypto::generate_key_material(KeySpec::ec_sm2);
  const Bytes pub = crypto::public_key_of(k.view());
  CHECK(crypto::public_key_spec(pub) == KeySpec::ec_sm2);
  const Bytes ct = crypto::public_encrypt(pub, EncryptionAlgorithm::sm2pke, Bytes(40, 7));
  const auto back = crypto::private_decrypt(k.view(), EncryptionAlgorithm::sm2pke, ct);
  REQUIRE(back);
  CHECK(back->size() == 40);
  const Bytes sig = crypto::sign(k.view(), SigningAlgorithm::sm2dsa, Bytes(5, 1), false);
  CHECK(crypto::verify(pub, SigningAlgorithm::sm2dsa, Bytes(5, 1), false, sig));
}

TEST_CASE("public keys round-trip through PEM and DER; other bytes are not public keys") {
  const Bytes pub = crypto::public_key_of(crypto::generate_key_material(KeySpec::ec_p384).view());
  const std::string pem = crypto::public_key_pem(pub);
  CHECK(pem.rfind("-----BEGIN PUBLIC KEY-----\n", 0) == 0);
  CHECK(crypto::parse_public_key(as_bytes(pem)) == pub);
  CHECK(crypto::parse_public_key(pub) == pub);
  CHECK_FALSE(crypto::parse_public_key(as_bytes("not a key")));
  CHECK_FALSE(crypto::parse_public_key(Bytes(pub.begin(), pub.end() - 1)));
}

TEST_CASE("hmac matches RFC 4231 test case 2 for SHA-256 and SHA-512") {
  const auto mac256 = crypto::hmac(MacAlgorithm::hmac_sha_256, as_bytes("Jefe"),
                                   as_bytes("what do ya want for nothing?"));
  CHECK(crypto::to_hex(mac256) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const auto mac512 = crypto::hmac(MacAlgorithm::hmac_sha_512, as_bytes("Jefe"),
                                   as_bytes("what do ya want for nothing?"));
  CHECK(
      crypto::to_hex(mac512) ==
      "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0"
      "e6fdcaeab1a34d4a6b4b636e070a38bce737");
}
