// A key's own policy (docs/POLICY.md, "Key policies"): a policy file stored with the key and
// evaluated with the service's policy file for every operation on the key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kms {

// What `key set-policy` and `key get-policy` answer. A key with no policy has only key_id.
struct KeyPolicyInfo {
  std::string key_id;
  std::optional<std::string> text;     // the policy file's bytes as given (TOML or JSON)
  std::optional<std::string> sha256;   // lower-case hex of SHA-256(text)
  std::optional<std::string> updated;  // RFC 3339 UTC
  std::optional<std::int64_t> updated_by_uid;
};

}  // namespace kms
