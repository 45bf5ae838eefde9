// The audit log as the library answers about it: what `audit verify` reports. The log itself
// (records, hash chain, MACs, the token anchor) is internal (src/audit/log.hpp) and specified in
// docs/FORMAT.md §8.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kms/records.hpp"
#include "kms/secure.hpp"

namespace kms::audit {

inline constexpr std::int64_t kMaxListLimit = 1'000'000;  // records in one `audit list`

// The head as kept outside the SQLite file.
struct Anchor {
  std::int64_t seq = 0;
  Bytes hash;
};

struct VerifyReport {
  bool ok = true;
  std::int64_t records = 0;
  std::optional<std::int64_t> first_bad_seq;
  std::string problem;
  std::optional<Anchor> anchor;
  std::optional<AuditHead> head;
  std::int64_t rows = 0;               // authenticated rows checked against the state
  std::int64_t state_recorded_at = 0;  // the record whose state they matched; 0: none recorded
};

}  // namespace kms::audit
