// The policy of a `kmsctl serve`: its file, loaded at start and again on reload (SIGHUP,
// `kmsctl serve reload`), and the authoriser that decides each of the service's requests by it,
// with the facts the vault holds about the resource (a key's aliases and tags, its grants).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "policy/policy.hpp"
#include <nlohmann/json.hpp>

#include "kms/access.hpp"
#include "kms/service.hpp"

namespace kms::serve {

class PolicyFile {
 public:
  // Loads `path`; Code::usage naming every problem with its line. An empty path: no file, a
  // policy that allows nothing.
  explicit PolicyFile(std::filesystem::path path);

  // Loads the file again and returns what it loaded (describe()); on a problem, keeps the policy
  // it had and throws Code::usage naming every problem with its line.
  nlohmann::json reload();
  // {"file": PATH or null, "sha256": HEX of its bytes, "statements": N}
  nlohmann::json describe() const;
  const policy::Policy& policy() const noexcept { return *policy_; }

 private:
  std::filesystem::path path_;
  std::shared_ptr<const policy::Policy> policy_;
  std::string sha256_;
};

// Decides each request of a service on `svc`:
// - the service's own records (start, stop, reload, a vault upgrade: no policy action) are
//   allowed; who may reload is checked at the socket;
// - its administrators (`admin_uid`, the service's own user, and root) administer it: grants
//   (create, list, revoke, retire); they get no data access beyond what the policy gives them;
// - a grant is retired by its grantee or its retiring principal;
// - everything else by `file`'s policy and the key's live grants: deny by default, an explicit
//   deny wins.
// `file` and `svc` outlive the authoriser; it runs under the service's lock, as every request.
Authorizer authorizer(Service& svc, const PolicyFile& file, std::int64_t admin_uid);

}  // namespace kms::serve
