// Unit tests of kms::VaultOperations (Service::vault_ops()) on a vault with a private SoftHSM2
// token per test case.
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

namespace {

const RecordRef kRef{"keys", "key-0001", 3};

}  // namespace

TEST_CASE("VaultOperations::status reports the vault and records itself") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const Status st = s->vault_ops().status();
  CHECK(st.vault_id == s->vault().meta().vault_id);
  CHECK(st.schema_version == store::kSchemaVersion);
  CHECK(st.private_token);
  CHECK(st.root_key_generation == 1);
  CHECK(st.audit_records == 2);
  CHECK(st.audit_head.seq == 2);
  CHECK(store::audit_count(s->vault().db()) == 2);
  CHECK(audit_rows(s->vault()).back().action == "vault.status");
}

TEST_CASE("VaultOperations::rekey is audited and the vault reopens with the new root key") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  Bytes blob;
  {
    auto s = init_service(path);
    blob = s->vault().seal(kRef, bytes_of("kept"));
    CHECK(s->vault_ops().rekey() == 2);
    CHECK(audit_rows(s->vault()).back().action == "vault.rekey");
  }
  auto s = Service::open(path, pin_of(kPin));
  CHECK(s->vault().meta().root_key_gen == 2);
  CHECK(s->vault().open_sealed(kRef, blob).chars() == "kept");
  CHECK(s->audit().verify().ok);
}

TEST_CASE("VaultOperations::change_pin makes the new PIN the only one that opens the vault") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  {
    auto s = init_service(path);
    s->vault_ops().change_pin(pin_of(kPin), pin_of("the-new-pin-5678"));
    CHECK(audit_rows(s->vault()).back().action == "vault.change_pin");
  }
  const Error e = error_of([&] { (void)Service::open(path, pin_of(kPin)); });
  CHECK(e.code() == Code::unavailable);
  CHECK(contains(e.what(), "CKR_PIN_INCORRECT"));
  auto s = Service::open(path, pin_of("the-new-pin-5678"));
  CHECK(s->audit().verify().ok);
}

TEST_CASE(
    "VaultOperations::change_pin with a wrong old PIN fails, keeps the PIN and records the "
    "failure") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  {
    auto s = init_service(path);
    const Error e = error_of(
        [&] { s->vault_ops().change_pin(pin_of("not-the-pin"), pin_of("the-new-pin-5678")); });
    CHECK(e.code() == Code::unavailable);
    const auto rows = audit_rows(s->vault());
    REQUIRE_FALSE(rows.empty());
    CHECK(rows.back().action == "vault.change_pin");
    CHECK(rows.back().outcome == "error");
    CHECK(rows.back().error_code == "unavailable");
  }
  CHECK_NOTHROW((void)Service::open(path, pin_of(kPin)));
}
