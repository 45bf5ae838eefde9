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
