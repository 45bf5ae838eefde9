// Unit tests of kms::SecretOperations (Service::secrets()) on a vault with a private SoftHSM2
// token per test case. Every secret request is also tested through kms::handle in
// src/core/test_requests.cpp.
#include <filesystem>
#include <string>
#include <vector>

#include "service_support.hpp"
#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/service.hpp"
#include "store/store.hpp"

using namespace kms;
using kms::test::audit_rows;
using kms::test::error_of;
using kms::test::init_service;
using kms::test::TempDir;

namespace {

SecretInput value_of(std::string_view v) { return {SecureBytes(as_bytes(v)), {}}; }

}  // namespace

TEST_CASE("SecretOperations: describe and versions read the same secret, each under its action") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  secrets::CreateSpec spec;
  spec.name = "app/db";
  (void)s->secrets().create(spec, value_of("v1"));
  (void)s->secrets().put("app/db", value_of("v2"));
  const secrets::SecretInfo described = s->secrets().describe("app/db");
  const secrets::SecretInfo versions = s->secrets().versions("app/db");
  CHECK(described.secret.id == versions.secret.id);
  CHECK(described.versions.size() == 2);
  CHECK(versions.versions.size() == 2);
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() >= 2);
  CHECK(rows[rows.size() - 2].action == "secret.describe");
  CHECK(rows.back().action == "secret.versions");
  for (const auto* r : {&rows[rows.size() - 2], &rows.back()}) {
    CHECK(r->resource == "secret/app/db");
    CHECK(r->outcome == "ok");
    CHECK(kms::test::params_of(*r) == nlohmann::json{{"name", "app/db"}});
  }
  CHECK(error_of([&] { (void)s->secrets().describe("app/none"); }).code() == Code::not_found);
  CHECK(audit_rows(s->vault()).back().outcome == "error");
}

TEST_CASE("SecretOperations::rotate with no rotation command records start, create and finish") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  secrets::CreateSpec spec;
  spec.name = "app/token";
  (void)s->secrets().create(spec, value_of("first-value"));
  const std::size_t before = audit_rows(s->vault()).size();
  const SecretRotation r = s->secrets().rotate("app/token");
  CHECK(r.name == "app/token");
  CHECK(r.previous_version == 1);
  CHECK(r.version == 2);
  CHECK_FALSE(r.resumed);
  CHECK(r.steps == std::vector<std::string>{"create", "finish"});
  const secrets::Value now = s->secrets().get("app/token", std::nullopt, std::nullopt);
  CHECK(now.version == 2);
  CHECK(now.value.chars() != "first-value");
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() == before + 4);  // three steps of the rotation, then the get
  const char* steps[] = {"start", "create", "finish"};
  for (std::size_t i = 0; i < 3; ++i) {
    const store::AuditRow& row = rows[before + i];
    CHECK(row.action == "secret.rotate");
    CHECK(row.outcome == "ok");
    CHECK(nlohmann::json::parse(row.params)["step"] == steps[i]);
  }
  CHECK(rows.back().action == "secret.get");
  CHECK(s->audit().verify().ok);
}

namespace {
constexpr const char* kSecretPolicy = R"(
[[statements]]
sid = "isv-reads"
effect = "allow"
principals = ["uid:4242"]
actions = ["secrets:GetSecretValue"]
resources = ["*"]
)";

std::string secret_with_policy(Service& s, const char* name) {
  secrets::CreateSpec spec;
  spec.name = name;
  const std::string id = s.secrets().create(spec, value_of("policy-test-value")).secret.id;
  (void)s.secrets().set_policy(name, std::string(kSecretPolicy));
  return id;
}
}  // namespace

TEST_CASE(
    "a secret's own policy is set, read, replaced and removed, and audited without its text") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  secrets::CreateSpec spec;
  spec.name = "app/db";
  const std::string id = s->secrets().create(spec, value_of("policy-test-value")).secret.id;
  const SecretPolicyInfo none = s->secrets().get_policy("app/db");
  CHECK(none.name == "app/db");
  CHECK(none.secret_id == id);
  CHECK(!none.text);
  CHECK(!none.sha256);

  const SecretPolicyInfo set = s->secrets().set_policy("app/db", std::string(kSecretPolicy));
  CHECK(set.secret_id == id);
  CHECK(set.text == std::string(kSecretPolicy));
  CHECK(set.sha256 == crypto::to_hex(crypto::sha256(as_bytes(kSecretPolicy))));
  CHECK(set.updated.has_value());
  CHECK(set.updated_by_uid.has_value());
  const auto rows = audit_rows(s->vault());
  CHECK(rows.back().action == "secret.set_policy");
  CHECK(rows.back().resource == "secret/app/db");
  const auto params = nlohmann::json::parse(rows.back().params);
  CHECK(params["sha256"] == *set.sha256);
  CHECK(params["statements"] == 1);
  CHECK(rows.back().params.find("isv-reads") == std::string::npos);
  CHECK(rows.back().params.find("policy-test-value") == std::string::npos);

  const SecretPolicyInfo got = s->secrets().get_policy("app/db");
  CHECK(got.text == std::string(kSecretPolicy));
  CHECK(got.sha256 == set.sha256);
  CHECK(audit_rows(s->vault()).back().action == "secret.get_policy");

  const std::string json =
      R"({"statements": [{"effect": "deny", "principals": ["*"], "actions": ["secrets:*"],)"
      R"( "resources": ["*"]}]})";
  const SecretPolicyInfo replaced = s->secrets().set_policy("app/db", json);
  CHECK(s->secrets().get_policy("app/db").text == json);
  CHECK(replaced.sha256 != set.sha256);

  CHECK(!s->secrets().set_policy("app/db", std::nullopt).text);
  CHECK(nlohmann::json::parse(audit_rows(s->vault()).back().params)["removed"] == true);
  CHECK(!s->secrets().get_policy("app/db").text);
  CHECK(!s->secrets().set_policy("app/db", std::nullopt).text);  // none to remove: still fine
  CHECK(nlohmann::json::parse(audit_rows(s->vault()).back().params)["removed"] == false);
  CHECK(error_of([&] { (void)s->secrets().get_policy("app/none"); }).code() == Code::not_found);
  CHECK(s->audit().verify().ok);
}

TEST_CASE("a secret policy with problems, or too large, is refused naming each problem's line") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  secrets::CreateSpec spec;
  spec.name = "app/db";
  (void)s->secrets().create(spec, value_of("policy-test-value"));
  const std::string bad =
      "[[statements]]\neffect = \"maybe\"\nprincipals = [\"*\"]\n"
      "actions = [\"secrets:GetSecretValue\"]\nresources = [\"*\"]\n\n[[statements]]\n"
      "effect = \"allow\"\nprincipals = [\"*\"]\nactions = [\"secrets:NoSuchThing\"]\n"
      "resources = [\"*\"]\n";
  const Error e = error_of([&] { (void)s->secrets().set_policy("app/db", bad); });
  CHECK(e.code() == Code::usage);
  const std::string what = e.what();
  CHECK(what.find("the policy for secret app/db has 2 problems") != std::string::npos);
  CHECK(what.find("2:") != std::string::npos);
  CHECK(what.find("10:") != std::string::npos);
  CHECK(audit_rows(s->vault()).back().outcome == "error");
  CHECK(!s->secrets().get_policy("app/db").text);
  const std::string huge(64 * 1024 + 1, '#');
  CHECK(error_of([&] { (void)s->secrets().set_policy("app/db", huge); }).code() == Code::usage);
  // A secret scheduled for deletion may still have its policy set and read.
  (void)s->secrets().remove("app/db", 7);
  CHECK(s->secrets().set_policy("app/db", std::string(kSecretPolicy)).text.has_value());
  CHECK(s->secrets().get_policy("app/db").text.has_value());
}

TEST_CASE("a secret's purge deletes its policy, and the state still verifies") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string id = secret_with_policy(*s, "app/db");
  (void)secret_with_policy(*s, "app/kept");
  REQUIRE(store::secret_policy_get(s->vault().db(), id).has_value());
  (void)s->secrets().remove("app/db", std::nullopt);
  CHECK_FALSE(store::secret_policy_get(s->vault().db(), id).has_value());
  CHECK(s->secrets().get_policy("app/kept").text.has_value());
  CHECK(s->audit().verify().ok);
  // The same name again is a new secret, with no policy of its own.
  secrets::CreateSpec spec;
  spec.name = "app/db";
  const std::string again = s->secrets().create(spec, value_of("v")).secret.id;
  CHECK(again != id);
  CHECK(!s->secrets().get_policy("app/db").text);
}

TEST_CASE("a secret policy row changed, added or removed outside kmsctl is found") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  (void)secret_with_policy(*s, "app/db");
  {
    store::Stmt u(s->vault().db(),
                  "UPDATE secret_policies SET text = replace(text, 'uid:4242', '*')");
    u.step();
  }
  CHECK(error_of([&] { (void)s->secrets().get_policy("app/db"); }).code() == Code::integrity);
  CHECK(error_of([&] { (void)s->secrets().set_policy("app/db", std::nullopt); }).code() ==
        Code::integrity);
  CHECK(!s->audit().verify().ok);
}
