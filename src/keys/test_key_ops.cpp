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

#include "kms/access.hpp"
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
  CHECK(p["to_key"] == to);
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
