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
    CHECK(nlohmann::json::parse(r->params) == nlohmann::json{{"name", "app/db"}});
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
