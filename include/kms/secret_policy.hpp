// A secret's own policy (docs/POLICY.md, "Secret policies"): a policy file stored with the secret
// and evaluated with the service's policy file for every operation on the secret.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kms {

// What `secret set-policy` and `secret get-policy` answer. A secret with no policy has only its
// name and id.
struct SecretPolicyInfo {
  std::string name;
  std::string secret_id;
  std::optional<std::string> text;     // the policy file's bytes as given (TOML or JSON)
  std::optional<std::string> sha256;   // lower-case hex of SHA-256(text)
  std::optional<std::string> updated;  // RFC 3339 UTC
  std::optional<std::int64_t> updated_by_uid;
};

}  // namespace kms
