#include "kms/access.hpp"

#include <fmt/format.h>

namespace kms {

Authorizer owner_only(std::int64_t owner_uid) {
  return [owner_uid](const AccessRequest& r) {
    if (r.caller.uid == owner_uid) return Decision{true, "owner", {}};
    return Decision{false, "not-owner",
                    fmt::format("only the vault's owner (uid {}) may use it", owner_uid)};
  };
}

}  // namespace kms
