// Authorisation: one function of (caller, action, resource, context) decides every request,
// before the operation does anything. The runner (Runner::run) asks it for every operation
// and records a refusal as a `denied` audit record naming the rule.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "kms/actions.hpp"
#include "kms/caller.hpp"
#include "kms/context.hpp"

namespace kms {

struct AccessRequest {
  const Caller& caller;
  Action action;
  std::string_view resource;  // "vault/<id>", "key/<id>", "secret/<name>", "file/<path>"
  const Context& context;     // the encryption context of a cryptographic operation
};

struct Decision {
  bool allowed = false;
  std::string rule;    // which rule decided: "owner", "not-owner", "policy:SID", "grant:ID";
                       // empty: an allowed request with no rule to record (a service's own)
  std::string reason;  // for a refusal: why, in a sentence (names no secret)
};

// The resource names of keys and secrets, in access requests and audit records.
inline std::string key_resource(std::string_view key_id) { return "key/" + std::string(key_id); }
inline std::string secret_resource(std::string_view name) { return "secret/" + std::string(name); }

using Authorizer = std::function<Decision(const AccessRequest&)>;

// The vault's owner (the uid that owns the vault file) may do everything; anyone else nothing.
Authorizer owner_only(std::int64_t owner_uid);

}  // namespace kms
