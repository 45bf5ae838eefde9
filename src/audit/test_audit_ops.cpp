// Unit tests of kms::AuditOperations (Service::audit()) on a vault with a private SoftHSM2 token
// per test case.
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
#include "runner/runner.hpp"
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

TEST_CASE("AuditOperations::export_to writes one private JSON line per record and records itself") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  s->runner().run({Action::vault_status, "key/k1", {{"n", 1}}}, [](audit::Event&) {});
  const std::int64_t n = s->audit().export_to(dir / "log.jsonl", false);
  CHECK(n == 2);
  CHECK(mode_of(dir / "log.jsonl") == 0600);
  const std::string text = kms::test::read_file(dir / "log.jsonl");
  std::vector<nlohmann::json> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(nlohmann::json::parse(text.substr(start, nl - start)));
  }
  CHECK(start == text.size());  // ends with a newline, nothing after it
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].at("action") == "vault.init");
  CHECK(lines[1].at("action") == "vault.status");
  CHECK(lines[1].at("params").at("n") == 1);
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() == 3);
  CHECK(rows[2].action == "audit.export");
  CHECK(rows[2].outcome == "ok");
  CHECK(lines[1].at("hash") == crypto::to_hex(rows[1].hash));
}

TEST_CASE(
    "AuditOperations::export_to to an existing file is refused, audited as denied, file kept") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  kms::test::write_file(dir / "log.jsonl", "precious");
  CHECK(error_of([&] { (void)s->audit().export_to(dir / "log.jsonl", false); }).code() ==
        Code::refused);
  CHECK(kms::test::read_file(dir / "log.jsonl") == "precious");
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() == 2);
  CHECK(rows[1].action == "audit.export");
  CHECK(rows[1].outcome == "denied");
  CHECK(s->audit().verify().ok);
}
