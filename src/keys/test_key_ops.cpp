// Unit tests of kms::KeyOperations (Service::keys()) on a vault with a private SoftHSM2 token per
// test case: what the runner is asked and records for each key operation.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "service_support.hpp"
#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include "keys/key_store.hpp"
#include "kms/access.hpp"
#include "kms/asymmetric.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/service.hpp"
#include "store/store.hpp"

using namespace kms;
using kms::test::audit_rows;
using kms::test::bytes_of;
using kms::test::contains;
using kms::test::error_of;
using kms::test::init_service;
using kms::test::kPin;
using kms::test::mode_of;
using kms::test::pin_of;
using kms::test::TempDir;
namespace fs = std::filesystem;

TEST_CASE("the authorizer sees the key an alias names and the encryption context") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  keys::CreateSpec spec;
  spec.alias = "alias/app";
  const std::string id = s->keys().create(spec).key.id;
  std::vector<std::pair<std::string, std::string>> asked;  // action, resource
  Context seen;
  s->set_authorizer([&](const AccessRequest& r) {
    asked.emplace_back(std::string(action_name(r.action)), std::string(r.resource));
    if (r.action == Action::key_encrypt) seen = r.context;
    return Decision{true, "test", {}};
  });
  const Context ctx{{"tenant", "t1"}};
  (void)s->keys().encrypt("alias/app", as_bytes("hello"), ctx);
  REQUIRE(asked.size() == 2);
  CHECK(asked[0] == std::pair<std::string, std::string>{"key.encrypt", "key/alias/app"});
  CHECK(asked[1] == std::pair<std::string, std::string>{"key.encrypt", "key/" + id});
  CHECK(seen == ctx);
  // A refusal of the resolved key stops the operation: no ciphertext, a denied record.
  s->set_authorizer([&](const AccessRequest& r) {
    const bool ok = r.resource != "key/" + id;
    return Decision{ok, ok ? "test" : "not-this-key", "not this key"};
  });
  CHECK(error_of([&] { (void)s->keys().encrypt("alias/app", as_bytes("hello"), ctx); }).code() ==
        Code::refused);
  const auto rows = audit_rows(s->vault());
  CHECK(rows.back().outcome == "denied");
  CHECK(rows.back().resource == "key/" + id);
  CHECK(nlohmann::json::parse(rows.back().params)["rule"] == "not-this-key");
}

TEST_CASE("re-encrypt asks for the source key and, with its own context, for the destination") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string from = s->keys().create({}).key.id;
  const std::string to = s->keys().create({}).key.id;
  const Context ctx{{"app", "a"}}, to_ctx{{"app", "b"}};
  const Bytes blob = s->keys().encrypt(from, as_bytes("moved"), ctx);
  std::vector<std::pair<std::string, Context>> asked;  // resource, context
  s->set_authorizer([&](const AccessRequest& r) {
    asked.emplace_back(std::string(r.resource), r.context);
    const bool ok = r.resource != "key/" + to;
    return Decision{ok, ok ? "test" : "not-the-destination", "not this key"};
  });
  CHECK(error_of([&] { (void)s->keys().reencrypt(blob, ctx, to, to_ctx); }).code() ==
        Code::refused);
  REQUIRE(asked.size() == 2);
  CHECK(asked[0] == std::pair<std::string, Context>{"key/" + from, ctx});
  CHECK(asked[1] == std::pair<std::string, Context>{"key/" + to, to_ctx});
  const auto rows = audit_rows(s->vault());
  CHECK(rows.back().action == "key.reencrypt");
  CHECK(rows.back().outcome == "denied");
  const nlohmann::json p = nlohmann::json::parse(rows.back().params);
  CHECK(p["rule"] == "not-the-destination");
  CHECK(p["to_key_id"] == to);
}

namespace {
constexpr const char* kKeyPolicy = R"(
[[statements]]
sid = "isv-encrypt"
effect = "allow"
principals = ["uid:4242"]
actions = ["kms:Encrypt"]
resources = ["*"]
)";
}  // namespace

TEST_CASE("a key's own policy is set, read, replaced and removed, and audited without its text") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  keys::CreateSpec spec;
  spec.alias = "alias/app";
  const std::string id = s->keys().create(spec).key.id;
  const KeyPolicyInfo none = s->keys().get_policy("alias/app");
  CHECK(none.key_id == id);
  CHECK(!none.text);
  CHECK(!none.sha256);

  const KeyPolicyInfo set = s->keys().set_policy("alias/app", std::string(kKeyPolicy));
  CHECK(set.key_id == id);
  CHECK(set.text == std::string(kKeyPolicy));
  CHECK(set.sha256 == crypto::to_hex(crypto::sha256(as_bytes(kKeyPolicy))));
  CHECK(set.updated.has_value());
  CHECK(set.updated_by_uid.has_value());
  const auto rows = audit_rows(s->vault());
  CHECK(rows.back().action == "key.set_policy");
  CHECK(rows.back().resource == "key/" + id);
  const auto params = nlohmann::json::parse(rows.back().params);
  CHECK(params["sha256"] == *set.sha256);
  CHECK(params["statements"] == 1);
  CHECK(rows.back().params.find("isv-encrypt") == std::string::npos);

  const KeyPolicyInfo got = s->keys().get_policy(id);
  CHECK(got.text == std::string(kKeyPolicy));
  CHECK(got.sha256 == set.sha256);

  const std::string json =
      R"({"statements": [{"effect": "deny", "principals": ["*"], "actions": ["kms:*"],)"
      R"( "resources": ["*"]}]})";
  const KeyPolicyInfo replaced = s->keys().set_policy(id, json);
  CHECK(s->keys().get_policy(id).text == json);
  CHECK(replaced.sha256 != set.sha256);

  CHECK(!s->keys().set_policy(id, std::nullopt).text);
  CHECK(nlohmann::json::parse(audit_rows(s->vault()).back().params)["removed"] == true);
  CHECK(!s->keys().get_policy(id).text);
  CHECK(!s->keys().set_policy(id, std::nullopt).text);  // none to remove: still fine
  CHECK(s->audit().verify().ok);
}

TEST_CASE("a key policy with problems, or too large, is refused naming each problem's line") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string id = s->keys().create({}).key.id;
  const std::string bad =
      "[[statements]]\neffect = \"maybe\"\nprincipals = [\"*\"]\nactions = [\"kms:Encrypt\"]\n"
      "resources = [\"*\"]\n\n[[statements]]\neffect = \"allow\"\nprincipals = [\"*\"]\n"
      "actions = [\"kms:NoSuchThing\"]\nresources = [\"*\"]\n";
  const Error e = error_of([&] { (void)s->keys().set_policy(id, bad); });
  CHECK(e.code() == Code::usage);
  const std::string what = e.what();
  CHECK(what.find("2 problems") != std::string::npos);
  CHECK(what.find("2:") != std::string::npos);
  CHECK(what.find("10:") != std::string::npos);
  CHECK(!s->keys().get_policy(id).text);
  const std::string huge(64 * 1024 + 1, '#');
  CHECK(error_of([&] { (void)s->keys().set_policy(id, huge); }).code() == Code::usage);
  // A key pending deletion may still have its policy set.
  (void)s->keys().schedule_deletion(id, 7);
  CHECK(s->keys().set_policy(id, std::string(kKeyPolicy)).text.has_value());
}

TEST_CASE("a key policy row changed, added or removed outside kmsctl is found") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string id = s->keys().create({}).key.id;
  (void)s->keys().set_policy(id, std::string(kKeyPolicy));
  {
    store::Stmt u(s->vault().db(), "UPDATE key_policies SET text = replace(text, '4242', '0')");
    u.step();
  }
  CHECK(error_of([&] { (void)s->keys().get_policy(id); }).code() == Code::integrity);
  CHECK(error_of([&] { (void)s->keys().set_policy(id, std::nullopt); }).code() == Code::integrity);
  CHECK(!s->audit().verify().ok);
}

namespace {

keys::KeyInfo create_hsm(Service& s, KeySpec spec, KeyUsage usage) {
  keys::CreateSpec c;
  c.spec = spec;
  c.usage = usage;
  c.protection = Protection::hsm;
  return s.keys().create(c);
}

}  // namespace

TEST_CASE("hsm key pairs sign in the token and verify with their public key, as software keys") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const Bytes msg = bytes_of("release 1.2.3");
  const std::pair<KeySpec, SigningAlgorithm> cases[] = {
      {KeySpec::ec_p256, SigningAlgorithm::ecdsa_sha_256},
      {KeySpec::ec_p384, SigningAlgorithm::ecdsa_sha_384},
      {KeySpec::ec_secp256k1, SigningAlgorithm::ecdsa_sha_256},
      {KeySpec::ed25519, SigningAlgorithm::ed25519},
      {KeySpec::rsa_2048, SigningAlgorithm::rsassa_pss_sha_256},
      {KeySpec::rsa_2048, SigningAlgorithm::rsassa_pkcs1_v1_5_sha_256},
  };
  for (const auto& c : cases) {
    const KeySpec spec = c.first;
    const SigningAlgorithm alg = c.second;
    CAPTURE(key_spec_name(spec));
    CAPTURE(signing_algorithm_name(alg));
    const std::string id = create_hsm(*s, spec, KeyUsage::sign).key.id;
    // No material in the vault: the private key is in the token only.
    const auto v = store::key_version_get(s->vault().db(), id, 1);
    REQUIRE(v);
    CHECK_FALSE(v->material);
    const keys::PublicKey pub = s->keys().get_public_key(id, std::nullopt);
    CHECK(crypto::public_key_spec(pub.spki) == spec);
    const keys::Signature sig = s->keys().sign(id, alg, msg, false);
    CHECK(crypto::verify(pub.spki, alg, msg, false, sig.value));
    CHECK(s->keys().verify(id, alg, msg, false, sig.value, std::nullopt).valid);
    Bytes bad = sig.value;
    bad[bad.size() / 2] ^= 1;
    CHECK_FALSE(s->keys().verify(id, alg, msg, false, bad, std::nullopt).valid);
    if (alg != SigningAlgorithm::ed25519) {
      const auto& info = signing_algorithm_info(alg);
      Bytes digest(EVP_MAX_MD_SIZE);
      std::size_t len = 0;
      REQUIRE(EVP_Q_digest(nullptr, info.digest.data(), nullptr, msg.data(), msg.size(),
                           digest.data(), &len) == 1);
      digest.resize(len);
      const keys::Signature dsig = s->keys().sign(id, alg, digest, true);
      CHECK(crypto::verify(pub.spki, alg, msg, false, dsig.value));
    }
  }
}

TEST_CASE("an hsm RSA key of usage encrypt decrypts RSA-OAEP in the token, across a rotation") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string id = create_hsm(*s, KeySpec::rsa_2048, KeyUsage::encrypt).key.id;
  const Bytes ct1 =
      s->keys().encrypt(id, bytes_of("one"), {}, EncryptionAlgorithm::rsaes_oaep_sha_256);
  (void)s->keys().rotate(id);
  const Bytes ct2 =
      s->keys().encrypt(id, bytes_of("two"), {}, EncryptionAlgorithm::rsaes_oaep_sha_256);
  const auto d1 =
      s->keys().decrypt_with(id, EncryptionAlgorithm::rsaes_oaep_sha_256, ct1, std::nullopt);
  CHECK(Bytes(d1.plaintext.view().begin(), d1.plaintext.view().end()) == bytes_of("one"));
  CHECK(d1.key_version == 1);
  const auto d2 =
      s->keys().decrypt_with(id, EncryptionAlgorithm::rsaes_oaep_sha_256, ct2, std::nullopt);
  CHECK(d2.key_version == 2);
  Bytes bad = ct2;
  bad[10] ^= 1;
  CHECK(error_of([&] {
          (void)s->keys().decrypt_with(id, EncryptionAlgorithm::rsaes_oaep_sha_256, bad,
                                       std::nullopt);
        }).code() == Code::integrity);
}

TEST_CASE("hsm key pairs are sensitive, never extractable token objects; erase destroys both") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string id = create_hsm(*s, KeySpec::ec_p256, KeyUsage::sign).key.id;
  (void)s->keys().rotate(id);
  hsm::Session& token = s->vault().token();
  for (int v : {1, 2}) {
    const std::string label = "kmsctl-key:" + id + ":" + std::to_string(v);
    CHECK(token.find_private_keys(label, as_bytes(id)).size() == 1);
    CHECK(token.find_public_keys(label, as_bytes(id)).size() == 1);
  }
  int pairs = 0;
  for (const hsm::ObjectInfo& o : token.list_objects()) {
    if (o.label.rfind("kmsctl-key:" + id, 0) != 0) continue;
    CHECK(o.own_attributes());
    if (o.object_class == CKO_PRIVATE_KEY) {
      ++pairs;
      CHECK(o.sensitive);
      CHECK_FALSE(o.extractable);
      CHECK(o.local);
    }
  }
  CHECK(pairs == 2);
  const std::vector<std::string> labels = {"kmsctl-key:" + id + ":1", "kmsctl-key:" + id + ":2"};
  keys::KeyStore(s->vault()).destroy_token_keys(labels);
  for (const std::string& label : labels) CHECK(token.find_key_objects(label).empty());
}

TEST_CASE("specs the token cannot hold are refused naming what it lacks") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  for (KeySpec spec : {KeySpec::ec_sm2, KeySpec::sm4, KeySpec::x25519, KeySpec::hmac_sha256}) {
    CAPTURE(key_spec_name(spec));
    keys::CreateSpec c;
    c.spec = spec;
    c.protection = Protection::hsm;
    const Error e = error_of([&] { (void)s->keys().create(c); });
    CHECK(e.code() == Code::refused);
    CHECK(e.remedy() == Remedy::use_software_protection);
    CHECK(contains(e.what(), "CKM_"));
  }
}

namespace {

// Wraps `material` for import parameters as a client would (RSAES_OAEP_SHA_256, or
// RSA_AES_KEY_WRAP_SHA_256: a fresh AES key by RSA-OAEP, then the material by RFC 5649).
Bytes wrap_for(const keys::ImportParams& p, ByteView material) {
  if (p.wrapping_algorithm == WrappingAlgorithm::rsaes_oaep_sha_256) {
    return crypto::public_encrypt(p.public_key, EncryptionAlgorithm::rsaes_oaep_sha_256, material);
  }
  const SecureBytes kek = crypto::random_secret(32);
  Bytes out =
      crypto::public_encrypt(p.public_key, EncryptionAlgorithm::rsaes_oaep_sha_256, kek.view());
  const Bytes body = crypto::aes_key_wrap_pad(kek.view(), material);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

keys::CreateSpec external(KeySpec spec) {
  keys::CreateSpec s;
  s.spec = spec;
  s.origin = Origin::external;
  return s;
}

}  // namespace

TEST_CASE("an external key takes imported material once per token, the same material only") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const keys::KeyInfo created = s->keys().create(external(KeySpec::aes_256));
  const std::string id = created.key.id;
  CHECK(created.key.state == KeyState::pending_import);
  CHECK(created.key.origin == Origin::external);
  CHECK(created.versions.empty());
  CHECK(error_of([&] { (void)s->keys().encrypt(id, as_bytes("x"), {}); }).remedy() ==
        Remedy::import_key_material);

  const SecureBytes material = crypto::random_secret(32);
  const keys::ImportParams p = s->keys().import_params(id, WrappingAlgorithm::rsaes_oaep_sha_256);
  CHECK(crypto::public_key_spec(p.public_key) == KeySpec::rsa_3072);
  const Bytes wrapped = wrap_for(p, material.view());
  const keys::KeyInfo imported = s->keys().import_material(id, wrapped, p.import_token, "30d");
  CHECK(imported.key.state == KeyState::enabled);
  CHECK(imported.key.material_expires.has_value());
  REQUIRE(imported.versions.size() == 1);
  // Audited without the material or the wrapped bytes.
  const auto rows = audit_rows(s->vault());
  CHECK(rows.back().action == "key.import_key_material");
  const auto params = nlohmann::json::parse(rows.back().params);
  CHECK(params["wrapping_algorithm"] == "RSAES_OAEP_SHA_256");
  CHECK(params["reimport"] == false);
  CHECK(rows.back().params.find(crypto::to_hex(material.view())) == std::string::npos);
  CHECK(rows.back().params.find(crypto::to_base64(wrapped)) == std::string::npos);

  // The material is the key's: a blob made with it by hand opens.
  const Bytes blob = s->keys().encrypt(id, as_bytes("hello"), {});
  const Bytes nonce(blob.begin() + 25, blob.begin() + 37);
  Bytes aad(blob.begin(), blob.begin() + 25);
  aad.insert(aad.end(), {0, 0, 0, 0});
  const auto opened = crypto::aes_gcm_open(material.view(), nonce, aad, ByteView(blob).subspan(37));
  REQUIRE(opened);
  CHECK(opened->chars() == "hello");
  // The token served once; another key's token and other material are refused.
  CHECK(contains(
      error_of([&] { (void)s->keys().import_material(id, wrapped, p.import_token, {}); }).what(),
      "already used"));
  const std::string other = s->keys().create(external(KeySpec::aes_256)).key.id;
  const keys::ImportParams po =
      s->keys().import_params(other, WrappingAlgorithm::rsaes_oaep_sha_256);
  const Error wrong_key = error_of([&] {
    (void)s->keys().import_material(id, wrap_for(po, material.view()), po.import_token, {});
  });
  CHECK(wrong_key.code() == Code::refused);
  CHECK(wrong_key.remedy() == Remedy::get_import_params);
  const keys::ImportParams p2 = s->keys().import_params(id, WrappingAlgorithm::rsaes_oaep_sha_256);
  const SecureBytes different = crypto::random_secret(32);
  const Error e = error_of([&] {
    (void)s->keys().import_material(id, wrap_for(p2, different.view()), p2.import_token, {});
  });
  CHECK(e.code() == Code::refused);
  CHECK(contains(e.what(), "other material"));
  // The same material again: it changes the expiry (none now).
  const keys::KeyInfo again =
      s->keys().import_material(id, wrap_for(p2, material.view()), p2.import_token, {});
  CHECK_FALSE(again.key.material_expires);
  CHECK(nlohmann::json::parse(audit_rows(s->vault()).back().params)["reimport"] == true);
  // Never rotated.
  CHECK(error_of([&] { (void)s->keys().rotate(id); }).code() == Code::refused);
  CHECK(error_of([&] { (void)s->keys().set_rotation(id, 90); }).code() == Code::refused);
  CHECK(s->audit().verify().ok);
}

TEST_CASE("imported private keys must be of the key's spec; external keys are software only") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  keys::CreateSpec hsm = external(KeySpec::aes_256);
  hsm.protection = Protection::hsm;
  const Error refused = error_of([&] { (void)s->keys().create(hsm); });
  CHECK(refused.code() == Code::refused);
  CHECK(contains(refused.what(), "software only"));

  const std::string id = s->keys().create(external(KeySpec::ec_p256)).key.id;
  const keys::ImportParams p =
      s->keys().import_params(id, WrappingAlgorithm::rsa_aes_key_wrap_sha_256);
  const SecureBytes p384 = crypto::generate_key_material(KeySpec::ec_p384);
  const Error mismatch = error_of(
      [&] { (void)s->keys().import_material(id, wrap_for(p, p384.view()), p.import_token, {}); });
  CHECK(mismatch.code() == Code::usage);
  CHECK(contains(mismatch.what(), "EC_P384"));
  const SecureBytes p256 = crypto::generate_key_material(KeySpec::ec_p256);
  const keys::KeyInfo info =
      s->keys().import_material(id, wrap_for(p, p256.view()), p.import_token, {});
  CHECK(info.key.state == KeyState::enabled);
  // The vault's public key is the imported one's.
  CHECK(s->keys().get_public_key(id, std::nullopt).spki == crypto::public_key_of(p256.view()));
  // A wrapped blob with one bit flipped does not unwrap: integrity, nothing imported.
  const std::string id2 = s->keys().create(external(KeySpec::hmac_sha256)).key.id;
  const keys::ImportParams p2 = s->keys().import_params(id2, WrappingAlgorithm::rsaes_oaep_sha_256);
  Bytes bad = wrap_for(p2, crypto::random_secret(32).view());
  bad[10] ^= 1;
  CHECK(error_of([&] { (void)s->keys().import_material(id2, bad, p2.import_token, {}); }).code() ==
        Code::integrity);
  CHECK(s->keys().describe(id2).key.state == KeyState::pending_import);
  CHECK(s->audit().verify().ok);
}
