// Helpers shared by the unit tests that open a vault through kms::Service (linked with
// kms_service or above): a fresh vault on a private SoftHSM2 token, and its audit records.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "audit/operations.hpp"
#include "files/operations.hpp"
#include "keys/operations.hpp"
#include "kms/caller.hpp"
#include "kms/service.hpp"
#include "secrets/operations.hpp"
#include "store/store.hpp"
#include "vault/operations.hpp"
#include "vault/vault.hpp"

namespace kms::test {

// Creates a vault at `path` (its private token beside it) and opens it, with kPin as user PIN.
inline std::unique_ptr<Service> init_service(const std::filesystem::path& path) {
  InitOptions opts;
  opts.vault = path;
  InitReport report;
  return Service::init(opts, pin_of(kPin), report);
}

// Every record of the vault's audit log, oldest first.
inline std::vector<store::AuditRow> audit_rows(Vault& v) {
  std::vector<store::AuditRow> rows;
  store::audit_scan(v.db(), [&](const store::AuditRow& r) { rows.push_back(r); });
  return rows;
}

// A record's params, after checking that they name this machine as the caller's host (every
// record a Service writes for Caller::current() does), without `host`.
inline nlohmann::json params_of(const store::AuditRow& r) {
  nlohmann::json p = nlohmann::json::parse(r.params);
  CHECK(p.value("host", "") == Caller::current().host);
  p.erase("host");
  return p;
}

}  // namespace kms::test
