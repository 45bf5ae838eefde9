// Grants: a key's owner lets one Unix user (the grantee) use some operations on that one key,
// possibly only with some encryption context, until the grant expires or is retired or revoked
// (docs/POLICY.md §6). What a request gives to create one, what the vault describes, and the
// checks a front end shares with the library. The store and the operations are internal
// (src/grants/).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kms/context.hpp"

namespace kms {

enum class GrantState : std::uint8_t { active, retired, revoked };
std::string_view grant_state_name(GrantState s) noexcept;  // "active", "retired", "revoked"
std::optional<GrantState> parse_grant_state(std::string_view name) noexcept;

// A grant as the vault describes it. Times are RFC 3339 (kms/clock.hpp).
struct GrantInfo {
  std::string id;      // "g-" and 24 lower-case hex digits
  std::string key_id;  // the key's id, never an alias
  std::int64_t grantee_uid = 0;
  std::string grantee;                  // as given: "user:isv", "uid:1001"
  std::vector<std::string> operations;  // policy names, in the order of grants::operations()
  std::optional<Context> context_equals;
  Context context_subset;
  std::optional<std::int64_t> retiring_uid;
  std::optional<std::string> retiring_principal;  // as given
  std::optional<std::string> name;
  std::string created;
  std::int64_t created_by_uid = 0;
  std::optional<std::string> expires;
  GrantState state = GrantState::active;
  std::optional<std::string> ended;  // when it was retired or revoked
};

struct GrantPage {
  std::vector<GrantInfo> grants;
  std::optional<std::string> next;  // pass as `after` for the next page
};

namespace grants {

inline constexpr std::string_view kIdPrefix = "g-";
inline constexpr std::int64_t kMaxListLimit = 1000;  // grants in one page of `grant list`
// The longest a grant may live: ten years.
inline constexpr std::chrono::seconds kMaxLifetime{std::int64_t{3650} * 86400};
inline constexpr std::size_t kMaxNameLength = 256;

struct CreateSpec {
  std::string key;                      // a key id or alias/NAME
  std::string grantee;                  // user:NAME or uid:N
  std::vector<std::string> operations;  // "Encrypt" or "kms:Encrypt", ...
  std::optional<Context> context_equals;
  Context context_subset;
  std::optional<std::string> retiring_principal;  // user:NAME or uid:N
  // A duration from now ("30d", "12h", "90m", "3600s"; at most kMaxLifetime) or an RFC 3339
  // time; none: no expiry.
  std::optional<std::string> expires;
  std::optional<std::string> name;
};

struct ListFilter {
  std::optional<std::string> key{};      // a key id or alias/NAME
  std::optional<std::string> grantee{};  // user:NAME or uid:N
  bool all = false;                      // ended and expired grants too
  std::optional<std::string> after{};    // a grant id: the page starts after it
  std::int64_t limit = 100;
};

// The operations a grant may give, as policy names, in their canonical order.
std::span<const std::string_view> operations() noexcept;
// "Encrypt" or "kms:encrypt" as its policy name ("kms:Encrypt"); Code::usage naming the allowed
// set for any other. The result is deduplicated and in the canonical order.
std::vector<std::string> canonical_operations(const std::vector<std::string>& names);

}  // namespace grants

// "90s", "15m", "2h", "1d" (a bare number is seconds), from 1 s to `max`; Code::usage naming
// `what` otherwise.
std::chrono::seconds parse_duration(const std::string& text, const char* what,
                                    std::chrono::seconds max);

}  // namespace kms
