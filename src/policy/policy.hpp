// Policies: who may do what to which resource, for a vault that serves several users
// (docs/POLICY.md). A policy file (TOML, or JSON of the same shape) is loaded once into a
// Policy, with every problem it has reported at once; evaluate() then decides a request with no
// I/O: deny by default, an explicit deny wins, otherwise a statement or a live grant allows.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kms/access.hpp"
#include "kms/actions.hpp"
#include "kms/context.hpp"

namespace kms::policy {

using Clock = std::chrono::system_clock;
using Tags = std::map<std::string, std::string>;

// A set of actions, one bit per kms::Action (there are fewer than 128).
struct ActionSet {
  std::uint64_t words[2] = {0, 0};
  constexpr ActionSet& operator|=(const ActionSet& o) {
    words[0] |= o.words[0];
    words[1] |= o.words[1];
    return *this;
  }
  constexpr bool has(Action a) const {
    const auto i = static_cast<unsigned>(a);
    return ((words[i / 64] >> (i % 64)) & 1u) != 0;
  }
  bool operator==(const ActionSet&) const = default;
};
constexpr ActionSet bit(Action a) {
  ActionSet s;
  const auto i = static_cast<unsigned>(a);
  s.words[i / 64] = std::uint64_t{1} << (i % 64);
  return s;
}

// The built-in roles: their names and the policy names of their actions.
struct Role {
  std::string_view name;
  std::span<const std::string_view> actions;
  std::string_view summary;
};
std::span<const Role> roles() noexcept;

struct Principal {
  enum class Kind : std::uint8_t { any, uid, gid };
  Kind kind = Kind::any;
  std::int64_t id = 0;
  std::string text;  // as the policy wrote it: "user:alice", "group:ops", "uid:0", "*"
};

// A resource pattern: `*` matches any characters (`/` too), `+` exactly one path segment.
struct Glob {
  enum class Kind : std::uint8_t { exact, prefix, general };
  Kind kind = Kind::exact;
  std::string text;
  bool matches(std::string_view name) const;
};

struct Conditions {
  std::optional<Context> context_equals;  // the request's context is exactly this
  Context context_subset;                 // each pair is in the request's context
  std::vector<std::string> context_keys;  // each key is in the request's context
  Tags resource_tags;                     // the resource carries each of these tags
  bool empty() const {
    return !context_equals && context_subset.empty() && context_keys.empty() &&
           resource_tags.empty();
  }
};

struct Statement {
  std::size_t index = 0;  // its place in the file, from 0 (as statements[N] counts)
  std::string sid;        // optional
  bool allow = false;
  std::vector<Principal> principals;
  std::vector<std::string> actions;  // as written ("kms:Describe*")
  std::vector<std::string> roles;    // as written
  ActionSet action_set;              // what actions and roles name together
  std::vector<Glob> resources;
  Conditions conditions;
  int line = 0;  // in a TOML file; 0 when unknown
  // "policy:<sid>", or "policy:<index>" without one.
  std::string rule() const;
};

// A problem of a policy file: where (line and column in TOML, 0 when unknown, and the path of
// the value in the document, "statements[2].effect") and what.
struct Problem {
  int line = 0;
  int column = 0;
  std::string path;
  std::string message;
  // "3:5: statements[2].effect: ..." (without the line when unknown).
  std::string text() const;
};

class Policy {
 public:
  Policy() : Policy(std::vector<Statement>{}) {}  // denies everything
  explicit Policy(std::vector<Statement> statements);
  const std::vector<Statement>& statements() const noexcept { return statements_; }

  // The statements of one effect that may apply to a caller for an action, by principal, each
  // list in the file's order.
  struct Index {
    std::vector<std::uint32_t> any;
    std::unordered_map<std::int64_t, std::vector<std::uint32_t>> by_uid, by_gid;
  };
  const Index& index(Action a, bool allow) const {
    return (allow ? allow_ : deny_)[static_cast<std::size_t>(a)];
  }

 private:
  std::vector<Statement> statements_;
  std::vector<Index> allow_, deny_;  // per action
};

struct LoadResult {
  std::optional<Policy> policy;   // when there is no problem
  std::vector<Problem> problems;  // every one found
};

// How a user or group name becomes an id (the system's: getpwnam_r, getgrnam_r). Tests and
// tools may give their own.
struct Names {
  std::function<std::optional<std::int64_t>(const std::string&)> user, group;
  static Names system();
};

LoadResult parse_toml(std::string_view text, const Names& names = Names::system());
LoadResult parse_json(std::string_view text, const Names& names = Names::system());
// JSON when the first non-blank character is `{`, else TOML.
LoadResult parse_text(std::string_view text, const Names& names = Names::system());
// The policy in `text`, or Code::usage "<what> has N problems: 3:5: ...; ..." naming every
// problem with its line, with `hint`.
Policy parse_or_refuse(std::string_view text, std::string_view what, std::string_view hint,
                       const Names& names = Names::system());
// A resource's own policy as `set-policy` takes it (docs/POLICY.md §7, §8): at most max_bytes
// (Code::usage beyond), then parse_or_refuse. `kind` and `name` name the resource ("key", its id).
Policy parse_resource_policy(std::string_view text, std::string_view kind, std::string_view name,
                             std::size_t max_bytes);
// A policy file's text; Code::usage when it cannot be read.
std::string read_text(const std::filesystem::path& path);
// parse_text(read_text(path)).
LoadResult load_file(const std::filesystem::path& path, const Names& names = Names::system());

// A grant: a key's owner lets one uid use some operations on that key, possibly only with some
// encryption context, until it expires or is retired or revoked. Stored elsewhere; evaluated here.
struct Grant {
  std::string id{};
  std::string key_id{};
  std::int64_t grantee_uid = 0;
  std::vector<std::string> operations{};  // policy names: "kms:Decrypt"
  std::optional<Context> context_equals{};
  Context context_subset{};
  std::optional<Clock::time_point> expires{};
  bool retired = false;
  bool revoked = false;
};

// Grants indexed by key id, for evaluations over many.
class GrantIndex {
 public:
  explicit GrantIndex(std::vector<Grant> grants);
  std::span<const Grant> for_key(std::string_view key_id) const;

 private:
  std::vector<Grant> grants_;  // sorted by key id
};

// One request to decide.
struct Query {
  std::int64_t uid = 0;
  std::span<const std::int64_t> gids;    // primary first, then supplementary
  Action action = Action::vault_status;  // one a caller can request (iam_name not empty)
  // Every name of the resource: "key/ID" and "alias/NAME" for each alias of the key.
  std::span<const std::string> resources;
  const Context* context = nullptr;  // null: none
  const Tags* tags = nullptr;        // the resource's tags; null: none
  Clock::time_point now{};           // for grant expiry
};

// deny by default; an explicit deny wins; otherwise allowed when a statement or a live grant
// allows. `grants`: those that may apply (a key's); the rest are ignored anyway.
Decision evaluate(const Policy& policy, const Query& q, std::span<const Grant> grants = {});

// What the authorizer asks of the vault about a resource: its names (the key's id and aliases)
// and tags; and the live grants of a key.
struct ResourceFacts {
  std::vector<std::string> names;  // empty: the resource as the request names it
  Tags tags;
  std::string
      key_id{};  // the key whose grants apply (an alias's too); empty: a "key/ID" resource's
  std::string secret_id{};  // the secret a "secret/NAME" resource names; empty: none
};
struct Sources {
  std::function<ResourceFacts(std::string_view resource)> facts;      // null: none
  std::function<std::vector<Grant>(std::string_view key_id)> grants;  // null: none
  // A key's own policy (a key policy, as AWS KMS's), or null: none. Its statements apply only to
  // requests on that key (`resources = ["*"]` is the key itself).
  std::function<std::shared_ptr<const Policy>(std::string_view key_id)> key_policy;  // null: none
  // A secret's own policy (a resource policy, as AWS Secrets Manager's), or null: none. Its
  // statements apply only to requests on that secret (`resources = ["*"]` is the secret itself).
  std::function<std::shared_ptr<const Policy>(std::string_view secret_id)>
      secret_policy;                       // null: none
  std::function<Clock::time_point()> now;  // null: system clock
};
// One request decided by `policy`, with what `sources` say of its resource. A request on
// "vault/ID" also matches the resource name "vault". A key's or a secret's own policy is
// evaluated with the file's: an explicit deny in either wins; otherwise a statement of either, or
// a live grant, allows (their rules are named "key-policy:SID", "secret-policy:SID").
Decision decide(const Policy& policy, const Sources& sources, const AccessRequest& r);
// A kms::Authorizer deciding each request by `policy` (decide).
Authorizer authorizer(std::shared_ptr<const Policy> policy, Sources sources = {});

}  // namespace kms::policy
