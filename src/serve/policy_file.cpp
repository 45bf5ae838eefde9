#include "serve/policy_file.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "grants/operations.hpp"
#include <fmt/format.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "store/store.hpp"
#include "vault/vault.hpp"

namespace kms::serve {
namespace fs = std::filesystem;

namespace {

// The policy in `text`, or Code::usage naming every problem of `path`'s with its line.
policy::Policy parse(const fs::path& path, const std::string& text) {
  return policy::parse_or_refuse(
      text, fmt::format("the policy {}", path.string()),
      fmt::format("fix it (`kmsctl policy validate {}` lists the same problems)", path.string()));
}

policy::Tags as_tags(const std::vector<std::pair<std::string, std::string>>& pairs) {
  return policy::Tags(pairs.begin(), pairs.end());
}

// What the vault knows about a resource: a key by its id or an alias has every name it goes by
// (its id and each alias) and its tags; a secret, its id (for its own policy) and its tags.
policy::ResourceFacts facts_of(store::Db& db, std::string_view resource) {
  policy::ResourceFacts f;
  // A key named by its alias, before the operation resolves it ("key/alias/NAME").
  if (resource.starts_with("key/alias/")) resource.remove_prefix(4);
  std::optional<std::string> key_id;
  if (resource.starts_with("key/")) {
    key_id = std::string(resource.substr(4));
  } else if (resource.starts_with("alias/")) {
    key_id = store::alias_target(db, resource);
  } else if (resource.starts_with("secret/")) {
    if (const auto s = store::secret_by_name(db, resource.substr(7))) {
      f.secret_id = s->id;
      f.tags = as_tags(store::secret_tags_of(db, s->id));
    }
    return f;
  }
  if (!key_id) return f;
  f.key_id = *key_id;
  f.names.push_back(key_resource(*key_id));
  for (std::string& alias : store::aliases_of(db, *key_id)) f.names.push_back(std::move(alias));
  if (resource.starts_with("alias/") &&
      std::find(f.names.begin(), f.names.end(), resource) == f.names.end()) {
    f.names.emplace_back(resource);
  }
  f.tags = as_tags(store::tags_of(db, *key_id));
  return f;
}

}  // namespace

PolicyFile::PolicyFile(fs::path path) : path_(path.empty() ? path : fs::absolute(path)) {
  if (path_.empty()) {
    policy_ = std::make_shared<const policy::Policy>();
    return;
  }
  (void)reload();
}

nlohmann::json PolicyFile::reload() {
  if (path_.empty()) return describe();
  const std::string text = policy::read_text(path_);
  policy::Policy loaded = parse(path_, text);
  policy_ = std::make_shared<const policy::Policy>(std::move(loaded));
  sha256_ = crypto::to_hex(crypto::sha256(as_bytes(text)));
  return describe();
}

nlohmann::json PolicyFile::describe() const {
  return {{"file", path_.empty() ? nlohmann::json() : nlohmann::json(path_.string())},
          {"sha256", path_.empty() ? nlohmann::json() : nlohmann::json(sha256_)},
          {"statements", policy_->statements().size()}};
}

namespace {

// What the service's administrators do without a policy statement: they run the service.
bool administrative(Action a) {
  switch (a) {
    case Action::grant_create:
    case Action::grant_list:
    case Action::grant_revoke:
    case Action::grant_retire:
    case Action::key_set_policy:
    case Action::key_get_policy:
    case Action::secret_set_policy:
    case Action::secret_get_policy:
      return true;
    default:
      return false;
  }
}

// Parsed policies of keys and secrets, kept by the SHA-256 of their text: each text is parsed
// once. A stored policy that no longer parses (a user it names was deleted since) allows
// nothing.
class OwnPolicies {
 public:
  std::shared_ptr<const policy::Policy> parsed(const std::string& sha256, const std::string& text) {
    const std::lock_guard lock(mutex_);
    if (const auto it = by_sha256_.find(sha256); it != by_sha256_.end()) return it->second;
    policy::LoadResult r = policy::parse_text(text);
    auto parsed = r.policy ? std::make_shared<const policy::Policy>(std::move(*r.policy))
                           : std::make_shared<const policy::Policy>();  // allows nothing
    if (by_sha256_.size() >= 256) by_sha256_.clear();
    by_sha256_.emplace(sha256, parsed);
    return parsed;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const policy::Policy>, std::less<>> by_sha256_;
};

// A key's or a secret's own policy, read from its row (the authorizer runs inside the
// operation's transaction, so a change applies from the next request).
void add_own_policies(Service& svc, policy::Sources& sources) {
  auto cache = std::make_shared<OwnPolicies>();
  sources.key_policy = [&svc, cache](std::string_view key_id) {
    const auto row = store::key_policy_get(svc.vault().db(), key_id);
    return row ? cache->parsed(row->sha256, row->text) : nullptr;
  };
  sources.secret_policy = [&svc, cache](std::string_view secret_id) {
    const auto row = store::secret_policy_get(svc.vault().db(), secret_id);
    return row ? cache->parsed(row->sha256, row->text) : nullptr;
  };
}

}  // namespace

Authorizer authorizer(Service& svc, const PolicyFile& file, std::int64_t admin_uid) {
  policy::Sources sources;
  sources.facts = [&svc](std::string_view resource) {
    return facts_of(svc.vault().db(), resource);
  };
  sources.grants = [&svc](std::string_view key_id) { return svc.grants().grants_of_key(key_id); };
  add_own_policies(svc, sources);
  return
      [&svc, &file, admin_uid, sources = std::move(sources)](const AccessRequest& r) -> Decision {
        if (iam_name(r.action).empty()) return {true, {}, {}};  // no rule to record
        if ((r.caller.uid == admin_uid || r.caller.uid == 0) && administrative(r.action)) {
          return {true, "service-administrator", {}};
        }
        // A grant is retired by its grantee or its retiring principal; anyone else as the policy
        // allows on the grant's key.
        if (r.action == Action::grant_retire && r.resource.starts_with("grant/")) {
          const auto g = store::grant_get(svc.vault().db(), r.resource.substr(6));
          if (!g) return policy::decide(file.policy(), sources, r);
          if (g->grantee_uid == r.caller.uid) return {true, "grantee", {}};
          if (g->retiring_uid == r.caller.uid) return {true, "retiring-principal", {}};
          const std::string key = key_resource(g->key_id);
          return policy::decide(file.policy(), sources, {r.caller, r.action, key, r.context});
        }
        Decision d = policy::decide(file.policy(), sources, r);
        // A file operation is decided by the keys it uses, each on its own (FileOperations); its
        // file is refused only by an explicit deny on "file/PATH".
        if (!d.allowed && d.rule == "default-deny" && r.resource.starts_with("file/")) {
          return {true, "file-keys-decide", {}};
        }
        return d;
      };
}

}  // namespace kms::serve
