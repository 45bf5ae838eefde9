// The grant operations of a vault (src/grants/operations.cpp): each is one audited transaction
// of the runner (authorise, do, audit). Reached through Service::grants(). docs/POLICY.md §6.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.hpp"

#include "kms/clock.hpp"
#include "kms/grants.hpp"
#include "vault/vault.hpp"

namespace kms {

class Runner;

class GrantOperations {
 public:
  // How `user:NAME` becomes a uid (the system's getpwnam_r by default; tests give their own).
  using UserLookup = std::function<std::optional<std::int64_t>(const std::string&)>;
  explicit GrantOperations(Runner& runner, UserLookup users = nullptr);

  // On "key/<id>" (an alias resolved and authorised again on its key). A create that a grant
  // allowed (kms:CreateGrant) makes a grant at least as strict as that one, else Code::refused.
  GrantInfo create(const grants::CreateSpec& spec);
  // On "key/<id>" with a key, else on "vault/<id>".
  GrantPage list(const grants::ListFilter& filter);
  // On "key/<id>" of the grant's key. Code::refused when it already ended.
  GrantInfo revoke(std::string_view grant_id);
  // On "grant/<id>" (its grantee or retiring principal may be allowed there). Code::refused when
  // it already ended.
  GrantInfo retire(std::string_view grant_id);

  // For the authorizer, inside the runner's transaction: every grant of a key as the policy
  // engine evaluates it (evaluate() drops the retired, revoked and expired ones), or only the
  // live ones at `now`. Rows are checked against their MACs (Code::integrity).
  std::vector<policy::Grant> grants_of_key(std::string_view key_id,
                                           std::optional<TimePoint> live_at = std::nullopt);
  static policy::Grant to_policy(const GrantInfo& g);

  // `user:NAME` or `uid:N` as a uid; Code::usage naming `what` otherwise.
  std::int64_t resolve_principal(std::string_view text, std::string_view what) const;

 private:
  GrantInfo end(Action action, std::string_view grant_id, GrantState state);

  Runner& runner_;
  Vault& vault_;
  UserLookup users_;
};

}  // namespace kms
