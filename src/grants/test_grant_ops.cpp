// Unit tests of kms::GrantOperations (Service::grants()) on a vault with a private SoftHSM2 token
// per test case: grants stored as authenticated rows, listed, revoked and retired, and the rule
// that a grant created under another is at least as strict.
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "grants/operations.hpp"
#include "service_support.hpp"
#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "audit/operations.hpp"
#include "keys/operations.hpp"
#include "kms/access.hpp"
#include "kms/clock.hpp"
#include "kms/error.hpp"
#include "kms/grants.hpp"
#include "kms/service.hpp"
#include "store/store.hpp"
#include "vault/vault.hpp"

using namespace kms;
using kms::test::audit_rows;
using kms::test::error_of;
using kms::test::init_service;
using kms::test::TempDir;

namespace {

grants::CreateSpec spec_for(const std::string& key, std::vector<std::string> ops) {
  grants::CreateSpec s;
  s.key = key;
  s.grantee = "uid:4242";
  s.operations = std::move(ops);
  return s;
}

nlohmann::json last_params(Service& s) {
  return nlohmann::json::parse(audit_rows(s.vault()).back().params);
}

}  // namespace

TEST_CASE("create stores a grant on the key an alias names, list shows it, its record names it") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  keys::CreateSpec ks;
  ks.alias = "alias/app";
  const std::string key = s->keys().create(ks).key.id;
  auto spec = spec_for("alias/app", {"decrypt", "kms:Encrypt", "Encrypt"});
  spec.context_subset = {{"tenant", "t1"}};
  spec.expires = "30d";
  spec.name = "isv";
  const GrantInfo g = s->grants().create(spec);
  CHECK(g.id.starts_with("g-"));
  CHECK(g.id.size() == 26);
  CHECK(g.key_id == key);
  CHECK(g.grantee_uid == 4242);
  CHECK(g.grantee == "uid:4242");
  CHECK(g.operations == std::vector<std::string>{"kms:Encrypt", "kms:Decrypt"});
  CHECK(g.state == GrantState::active);
  REQUIRE(g.expires);
  const auto rows = audit_rows(s->vault());
  CHECK(rows.back().action == "grant.create");
  CHECK(rows.back().resource == "key/" + key);
  const auto p = last_params(*s);
  CHECK(p["grant_id"] == g.id);
  CHECK(p["grantee"] == "uid:4242");
  CHECK(p["operations"] == nlohmann::json{"kms:Encrypt", "kms:Decrypt"});
  CHECK(p["constraints"]["context_subset"]["tenant"] == "t1");
  CHECK(p["expires"] == *g.expires);

  const GrantPage page = s->grants().list({.key = key});
  REQUIRE(page.grants.size() == 1);
  CHECK(page.grants[0].id == g.id);
  CHECK(page.grants[0].context_subset == Context{{"tenant", "t1"}});
  CHECK(!page.next);
  CHECK(s->grants().list({.grantee = std::string("uid:4242")}).grants.size() == 1);
  CHECK(s->grants().list({.grantee = std::string("uid:7")}).grants.empty());
  // The same name with the same terms is the same grant; with other terms, a refusal.
  CHECK(s->grants().create(spec).id == g.id);
  CHECK(last_params(*s)["existing"] == true);
  auto other = spec;
  other.operations = {"Decrypt"};
  CHECK(error_of([&] { (void)s->grants().create(other); }).code() == Code::refused);
}

TEST_CASE("revoke and retire end a grant once; list shows ended grants only with all") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string key = s->keys().create({}).key.id;
  const GrantInfo a = s->grants().create(spec_for(key, {"Encrypt"}));
  const GrantInfo b = s->grants().create(spec_for(key, {"Decrypt"}));
  const GrantInfo ra = s->grants().revoke(a.id);
  CHECK(ra.state == GrantState::revoked);
  CHECK(ra.ended);
  CHECK(audit_rows(s->vault()).back().resource == "key/" + key);
  CHECK(last_params(*s)["grant_id"] == a.id);
  const GrantInfo rb = s->grants().retire(b.id);
  CHECK(rb.state == GrantState::retired);
  CHECK(audit_rows(s->vault()).back().resource == "grant/" + b.id);
  CHECK(error_of([&] { (void)s->grants().revoke(a.id); }).code() == Code::refused);
  CHECK(error_of([&] { (void)s->grants().retire(b.id); }).code() == Code::refused);
  CHECK(error_of([&] { (void)s->grants().revoke("g-000000000000000000000000"); }).code() ==
        Code::not_found);
  CHECK(s->grants().list({.key = key}).grants.empty());
  const auto all = s->grants().list({.key = key, .all = true});
  REQUIRE(all.grants.size() == 2);
  CHECK(all.grants[0].state == GrantState::revoked);
  CHECK(all.grants[1].state == GrantState::retired);
  // The authorizer's view: both are there, ended, so evaluate() ignores them.
  const auto pg = s->grants().grants_of_key(key);
  REQUIRE(pg.size() == 2);
  CHECK(pg[0].revoked);
  CHECK(pg[1].retired);
  CHECK(s->grants().grants_of_key(key, now()).empty());
}

TEST_CASE("an expired grant is not live; pages follow each other") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string key = s->keys().create({}).key.id;
  auto spec = spec_for(key, {"Encrypt"});
  spec.expires = "1h";
  const GrantInfo g = s->grants().create(spec);
  CHECK(s->grants().grants_of_key(key, now()).size() == 1);
  CHECK(s->grants().grants_of_key(key, now() + std::chrono::hours(2)).empty());
  const auto p = GrantOperations::to_policy(g);
  REQUIRE(p.expires);
  CHECK(*p.expires > std::chrono::system_clock::now());
  for (int i = 0; i < 2; ++i) (void)s->grants().create(spec_for(key, {"Decrypt"}));
  const GrantPage first = s->grants().list({.key = key, .limit = 2});
  REQUIRE(first.grants.size() == 2);
  REQUIRE(first.next);
  const GrantPage second = s->grants().list({.key = key, .after = first.next, .limit = 2});
  CHECK(second.grants.size() == 1);
  CHECK(!second.next);
}

TEST_CASE("bad requests: operations outside the set, unknown users, keys, expiries") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string key = s->keys().create({}).key.id;
  const Error ops =
      error_of([&] { (void)s->grants().create(spec_for(key, {"ScheduleKeyDeletion"})); });
  CHECK(ops.code() == Code::usage);
  CHECK(std::string(ops.what())
            .find("Encrypt, Decrypt, ReEncrypt, GenerateDataKey, DescribeKey, "
                  "CreateGrant, RetireGrant") != std::string::npos);
  auto user = spec_for(key, {"Encrypt"});
  user.grantee = "user:no-such-user-kmsctl";
  const Error u = error_of([&] { (void)s->grants().create(user); });
  CHECK(u.code() == Code::usage);
  CHECK(std::string(u.what()).find("no-such-user-kmsctl") != std::string::npos);
  CHECK(error_of([&] { (void)s->grants().create(spec_for("alias/none", {"Encrypt"})); }).code() ==
        Code::not_found);
  auto far = spec_for(key, {"Encrypt"});
  far.expires = "3651d";
  CHECK(error_of([&] { (void)s->grants().create(far); }).code() == Code::usage);
  far.expires = "2001-01-01T00:00:00Z";
  CHECK(error_of([&] { (void)s->grants().create(far); }).code() == Code::usage);
  auto both = spec_for(key, {"Encrypt"});
  both.context_equals = Context{{"a", "1"}};
  both.context_subset = {{"b", "2"}};
  CHECK(error_of([&] { (void)s->grants().create(both); }).code() == Code::usage);
  (void)s->keys().schedule_deletion(key, 7);
  CHECK(error_of([&] { (void)s->grants().create(spec_for(key, {"Encrypt"})); }).code() ==
        Code::refused);
  // Failures are recorded too.
  CHECK(audit_rows(s->vault()).back().outcome == "denied");
}

TEST_CASE("a grant created under a grant is at least as strict as it") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string key = s->keys().create({}).key.id;
  auto pspec = spec_for(key, {"Encrypt", "Decrypt", "CreateGrant"});
  pspec.context_subset = {{"tenant", "t1"}};
  pspec.expires = "10d";
  const GrantInfo parent = s->grants().create(pspec);
  s->set_authorizer([&](const AccessRequest& r) {
    if (r.action == Action::grant_create) return Decision{true, "grant:" + parent.id, {}};
    return Decision{true, "test", {}};
  });
  auto child = spec_for(key, {"Decrypt"});
  child.context_subset = {{"tenant", "t1"}, {"app", "x"}};
  child.expires = "1d";
  const GrantInfo ok = s->grants().create(child);
  const auto p = last_params(*s);
  CHECK(p["grant_id"] == ok.id);
  CHECK(p["parent_grant_id"] == parent.id);
  CHECK(p["rule"] == "grant:" + parent.id);

  auto wider_ops = child;
  wider_ops.operations = {"Decrypt", "GenerateDataKey"};
  const Error e1 = error_of([&] { (void)s->grants().create(wider_ops); });
  CHECK(e1.code() == Code::refused);
  CHECK(std::string(e1.what()).find("kms:GenerateDataKey") != std::string::npos);
  auto no_context = child;
  no_context.context_subset = {{"app", "x"}};
  CHECK(error_of([&] { (void)s->grants().create(no_context); }).code() == Code::refused);
  auto exact = child;
  exact.context_subset = {};
  exact.context_equals = Context{{"tenant", "t1"}};
  CHECK(s->grants().create(exact).context_equals == Context{{"tenant", "t1"}});
  auto longer = child;
  longer.expires = "11d";
  const Error e2 = error_of([&] { (void)s->grants().create(longer); });
  CHECK(e2.code() == Code::refused);
  CHECK(std::string(e2.what()).find("outlive") != std::string::npos);
  auto forever = child;
  forever.expires.reset();
  CHECK(error_of([&] { (void)s->grants().create(forever); }).code() == Code::refused);
}

TEST_CASE("a grant row widened outside kmsctl is Code::integrity when read") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string key = s->keys().create({}).key.id;
  const GrantInfo g = s->grants().create(spec_for(key, {"Encrypt"}));
  {
    store::Stmt u(s->vault().db(), "UPDATE grants SET operations = 'kms:Encrypt,kms:Decrypt'");
    u.step();
  }
  CHECK(error_of([&] { (void)s->grants().list({}); }).code() == Code::integrity);
  CHECK(error_of([&] { (void)s->grants().grants_of_key(key); }).code() == Code::integrity);
  CHECK(!s->audit().verify().ok);
}

TEST_CASE("audit list by grant finds the records about it, made under it and allowed by it") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string key = s->keys().create({}).key.id;
  const GrantInfo parent = s->grants().create(spec_for(key, {"Encrypt", "CreateGrant"}));
  const GrantInfo other = s->grants().create(spec_for(key, {"Decrypt"}));
  s->set_authorizer([&](const AccessRequest& r) {
    if (r.action == Action::grant_revoke) return Decision{false, "no-revoke", "not today"};
    if (r.action == Action::grant_create || r.action == Action::key_encrypt) {
      return Decision{true, "grant:" + parent.id, {}};
    }
    return Decision{true, "test", {}};
  });
  const GrantInfo child = s->grants().create(spec_for(key, {"Encrypt"}));
  (void)s->keys().encrypt(key, as_bytes("x"), {});
  // A refused revoke still names the grant it was about.
  CHECK(error_of([&] { (void)s->grants().revoke(other.id); }).code() == Code::refused);
  CHECK(nlohmann::json::parse(audit_rows(s->vault()).back().params)["grant_id"] == other.id);
  auto actions = [&](const std::string& id) {
    AuditFilter f;
    f.grant = id;
    std::vector<std::string> out;
    for (const auto& r : s->audit().list(f)) out.push_back(r.action + ":" + r.outcome);
    return out;
  };
  CHECK(actions(parent.id) ==
        std::vector<std::string>{"key.encrypt:ok", "grant.create:ok", "grant.create:ok"});
  CHECK(actions(child.id) == std::vector<std::string>{"grant.create:ok"});
  CHECK(actions(other.id) == std::vector<std::string>{"grant.revoke:denied", "grant.create:ok"});
}
