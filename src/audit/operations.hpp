// The operations on a vault's audit log (src/audit/operations.cpp): list, verify and export,
// each itself audited by the runner. Reached through Service::audit().
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "audit/log.hpp"
#include "store/store.hpp"
#include "vault/vault.hpp"

namespace kms {

class Runner;

class AuditOperations {
 public:
  explicit AuditOperations(Runner& runner);

  // Newest first (or oldest first), at most filter.limit rows.
  std::vector<AuditRecord> list(const AuditFilter& filter);
  // Walks the chain; records the verification (ok or failed) when the log can still be appended.
  // A backup is verified against the live token anchor too (a stale one fails) and never written.
  audit::VerifyReport verify();
  // `audit export`: JSON Lines of the whole log to `dest` (atomic, 0600). Returns the number of
  // records.
  std::int64_t export_to(const std::filesystem::path& dest, bool overwrite);

 private:
  Runner& runner_;
  Vault& vault_;
};

}  // namespace kms
