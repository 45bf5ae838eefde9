// Evaluating a request against a policy and grants: no I/O, no allocation on the hot path but
// the Decision's strings.
#include <algorithm>
#include <array>
#include <utility>

#include "policy/policy.hpp"
#include <fmt/format.h>

namespace kms::policy {
namespace {

constexpr std::string_view kCryptoUser[] = {
    "kms:Encrypt",        "kms:Decrypt",     "kms:ReEncrypt",   "kms:GenerateDataKey",
    "kms:GenerateRandom", "kms:DescribeKey", "kms:ListKeys",    "kms:ListAliases",
    "kms:Sign",           "kms:Verify",      "kms:GenerateMac", "kms:VerifyMac",
    "kms:GetPublicKey"};
constexpr std::string_view kCryptoAdmin[] = {"kms:CreateKey",         "kms:DescribeKey",
                                             "kms:ListKeys",          "kms:EnableKey",
                                             "kms:DisableKey",        "kms:RotateKey",
                                             "kms:SetKeyRotation",    "kms:ScheduleKeyDeletion",
                                             "kms:CancelKeyDeletion", "kms:CreateAlias",
                                             "kms:UpdateAlias",       "kms:DeleteAlias",
                                             "kms:ListAliases",       "kms:TagResource",
                                             "kms:UntagResource",     "kms:CreateGrant",
                                             "kms:ListGrants",        "kms:RevokeGrant",
                                             "kms:RetireGrant",       "kms:PutKeyPolicy",
                                             "kms:GetKeyPolicy",      "kms:GetParametersForImport",
                                             "kms:ImportKeyMaterial"};
constexpr std::string_view kSecretUser[] = {"secrets:GetSecretValue", "secrets:DescribeSecret",
                                            "secrets:ListSecrets"};
// Not secrets:PutResourcePolicy: a secret's own policy can allow secrets:GetSecretValue, which
// this role does not have (docs/POLICY.md §8).
constexpr std::string_view kSecretAdmin[] = {
    "secrets:CreateSecret",     "secrets:PutSecretValue",       "secrets:DescribeSecret",
    "secrets:ListSecrets",      "secrets:ListSecretVersionIds", "secrets:DeleteSecret",
    "secrets:RestoreSecret",    "secrets:SetSecretRotation",    "secrets:RotateSecret",
    "secrets:GetResourcePolicy"};
constexpr std::string_view kReadOnly[] = {"kms:ListKeys",           "kms:DescribeKey",
                                          "kms:ListAliases",        "secrets:ListSecrets",
                                          "secrets:DescribeSecret", "secrets:ListSecretVersionIds",
                                          "vault:Status",           "kms:ListGrants",
                                          "kms:GetKeyPolicy",       "secrets:GetResourcePolicy",
                                          "kms:GetPublicKey"};
constexpr std::string_view kAuditor[] = {"kms:ListKeys",
                                         "kms:DescribeKey",
                                         "kms:ListAliases",
                                         "secrets:ListSecrets",
                                         "secrets:DescribeSecret",
                                         "secrets:ListSecretVersionIds",
                                         "vault:Status",
                                         "audit:Query",
                                         "audit:Verify",
                                         "audit:Export",
                                         "kms:ListGrants",
                                         "kms:GetKeyPolicy",
                                         "secrets:GetResourcePolicy",
                                         "kms:GetPublicKey"};

constexpr std::array kRoles{
    Role{"crypto-user", kCryptoUser,
         "use keys: encrypt, decrypt, re-encrypt, data keys, random bytes, sign, verify, MACs, "
         "public keys; describe and list"},
    Role{"crypto-admin", kCryptoAdmin,
         "manage keys: create, enable, disable, rotate, delete, aliases, tags, grants, key "
         "policies, import key material; no cryptography"},
    Role{"secret-user", kSecretUser, "read secret values; describe and list secrets"},
    Role{"secret-admin", kSecretAdmin,
         "manage secrets: create, put, delete, restore, rotation, read their policies; not "
         "read their values"},
    Role{"read-only", kReadOnly,
         "list and describe keys, aliases and secrets, read public keys and the vault's status; no "
         "values"},
    Role{"auditor", kAuditor, "read-only, plus query, verify and export the audit log"},
};

// One pass with one backtracking point, the last `*` (O(pattern × name), whatever the pattern):
// everything between two stars matches deterministically, since a `+` (a whole segment, the
// loader checked) consumes exactly up to the next '/', and a later start never ends earlier.
// Not inlined: inlined into the statement scan it made that loop 1.7 times slower
// (bench_policy_eval, "everyone"), for patterns most statements do not have.
[[gnu::noinline]] bool match_general(std::string_view p, std::string_view n) {
  constexpr std::size_t kNoStar = std::string_view::npos;
  std::size_t pi = 0, ni = 0, star = kNoStar, mark = 0;
  while (pi < p.size() || ni < n.size()) {
    if (pi < p.size()) {
      const char c = p[pi];
      if (c == '*') {
        star = pi++;
        mark = ni;
        continue;
      }
      if (c == '+') {  // one or more characters but '/'
        const std::size_t len = std::min(n.find('/', ni), n.size()) - ni;
        if (len > 0) {
          ni += len;
          ++pi;
          continue;
        }
      } else if (ni < n.size() && n[ni] == c) {
        ++pi;
        ++ni;
        continue;
      }
    }
    if (star == kNoStar || mark >= n.size()) return false;
    pi = star + 1;
    ni = ++mark;
  }
  return true;
}

bool has_all(const Context& have, const Context& want) {
  for (const auto& [k, v] : want) {
    const auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

const Context kNoContext;
const Tags kNoTags;

bool resource_matches(const Statement& s, std::span<const std::string> names) {
  for (const Glob& g : s.resources) {
    for (const std::string& n : names) {
      if (g.matches(n)) return true;
    }
  }
  return false;
}

bool conditions_hold(const Conditions& c, const Context& context, const Tags& tags) {
  if (c.context_equals && *c.context_equals != context) return false;
  if (!has_all(context, c.context_subset)) return false;
  for (const std::string& k : c.context_keys) {
    if (!context.contains(k)) return false;
  }
  return has_all(tags, c.resource_tags);
}

// The lowest index of a statement in `ix` that applies to q, or npos.
constexpr std::uint32_t kNone = UINT32_MAX;
std::uint32_t first_applying(const Policy& policy, const Policy::Index& ix, const Query& q,
                             const Context& context, const Tags& tags) {
  std::uint32_t best = kNone;
  const auto scan = [&](const std::vector<std::uint32_t>& list) {
    for (std::uint32_t i : list) {
      if (i >= best) return;  // each list is in ascending order
      const Statement& s = policy.statements()[i];
      if (resource_matches(s, q.resources) && conditions_hold(s.conditions, context, tags)) {
        best = i;
        return;
      }
    }
  };
  scan(ix.any);
  if (const auto it = ix.by_uid.find(q.uid); it != ix.by_uid.end()) scan(it->second);
  for (std::int64_t g : q.gids) {
    if (const auto it = ix.by_gid.find(g); it != ix.by_gid.end()) scan(it->second);
  }
  return best;
}

bool grant_allows(const Grant& g, const Query& q, std::string_view iam, const Context& context) {
  if (g.retired || g.revoked || g.grantee_uid != q.uid) return false;
  if (g.expires && *g.expires <= q.now) return false;
  if (std::find(g.operations.begin(), g.operations.end(), iam) == g.operations.end()) return false;
  const bool on_key =
      std::any_of(q.resources.begin(), q.resources.end(), [&](const std::string& r) {
        return r.size() == 4 + g.key_id.size() && r.starts_with("key/") && r.ends_with(g.key_id);
      });
  if (!on_key) return false;
  if (g.context_equals && *g.context_equals != context) return false;
  return has_all(context, g.context_subset);
}

std::string resource_text(const Query& q) {
  return q.resources.empty() ? std::string("(no resource)") : q.resources.front();
}

// The first of the request's names a statement's resources match (a deny names it).
std::string matched_name(const Statement& s, const Query& q) {
  for (const std::string& n : q.resources) {
    for (const Glob& g : s.resources) {
      if (g.matches(n)) return n;
    }
  }
  return resource_text(q);
}

}  // namespace

std::span<const Role> roles() noexcept { return kRoles; }

bool Glob::matches(std::string_view name) const {
  switch (kind) {
    case Kind::exact:
      return name == text;
    case Kind::prefix:
      return name.starts_with(std::string_view(text).substr(0, text.size() - 1));
    case Kind::general:
      return match_general(text, name);
  }
  return false;
}

std::string Statement::rule() const {
  return sid.empty() ? fmt::format("policy:{}", index) : "policy:" + sid;
}

Policy::Policy(std::vector<Statement> statements)
    : statements_(std::move(statements)),
      allow_(kms::actions().size()),
      deny_(kms::actions().size()) {
  for (std::uint32_t i = 0; i < statements_.size(); ++i) {
    const Statement& s = statements_[i];
    for (const ActionInfo& a : kms::actions()) {
      if (!s.action_set.has(a.action)) continue;
      Index& ix = (s.allow ? allow_ : deny_)[static_cast<std::size_t>(a.action)];
      for (const Principal& p : s.principals) {
        std::vector<std::uint32_t>& list = p.kind == Principal::Kind::any   ? ix.any
                                           : p.kind == Principal::Kind::uid ? ix.by_uid[p.id]
                                                                            : ix.by_gid[p.id];
        if (list.empty() || list.back() != i) list.push_back(i);
      }
    }
  }
}

GrantIndex::GrantIndex(std::vector<Grant> grants) : grants_(std::move(grants)) {
  std::stable_sort(grants_.begin(), grants_.end(),
                   [](const Grant& a, const Grant& b) { return a.key_id < b.key_id; });
}

std::span<const Grant> GrantIndex::for_key(std::string_view key_id) const {
  const auto lo = std::lower_bound(
      grants_.begin(), grants_.end(), key_id,
      [](const Grant& g, std::string_view k) { return std::string_view(g.key_id) < k; });
  auto hi = lo;
  while (hi != grants_.end() && hi->key_id == key_id) ++hi;
  return {lo, hi};
}

Decision evaluate(const Policy& policy, const Query& q, std::span<const Grant> grants) {
  const std::string_view iam = iam_name(q.action);
  if (iam.empty()) {
    return {false, "default-deny",
            fmt::format("{} is not an action a policy can allow", action_name(q.action))};
  }
  const Context& context = q.context != nullptr ? *q.context : kNoContext;
  const Tags& tags = q.tags != nullptr ? *q.tags : kNoTags;

  const std::uint32_t deny =
      first_applying(policy, policy.index(q.action, false), q, context, tags);
  if (deny != kNone) {
    const Statement& s = policy.statements()[deny];
    return {false, s.rule(),
            fmt::format("policy statement {} denies {} to uid {} on {}",
                        s.sid.empty() ? fmt::format("{}", s.index) : fmt::format("{:?}", s.sid),
                        iam, q.uid, matched_name(s, q))};
  }
  const std::uint32_t allow =
      first_applying(policy, policy.index(q.action, true), q, context, tags);
  if (allow != kNone) return {true, policy.statements()[allow].rule(), {}};
  for (const Grant& g : grants) {
    if (grant_allows(g, q, iam, context)) return {true, "grant:" + g.id, {}};
  }
  return {false, "default-deny",
          fmt::format("no policy statement or grant allows {} to uid {} on {}", iam, q.uid,
                      resource_text(q))};
}

Decision decide(const Policy& policy, const Sources& sources, const AccessRequest& r) {
  ResourceFacts facts;
  if (sources.facts) facts = sources.facts(r.resource);
  if (facts.names.empty()) facts.names.emplace_back(r.resource);
  if (r.resource.starts_with("vault/")) facts.names.emplace_back("vault");
  if (facts.key_id.empty() && r.resource.starts_with("key/")) {
    facts.key_id = r.resource.substr(4);
  }
  std::vector<Grant> grants;
  if (sources.grants && !facts.key_id.empty()) grants = sources.grants(facts.key_id);
  Query q;
  q.uid = r.caller.uid;
  q.gids = r.caller.groups;
  q.action = r.action;
  q.resources = facts.names;
  q.context = &r.context;
  q.tags = &facts.tags;
  q.now = sources.now ? sources.now() : Clock::now();
  const Decision by_file = evaluate(policy, q, grants);
  const bool explicit_deny = !by_file.allowed && by_file.rule != "default-deny";
  // The resource's own policy: a key's, or a secret's.
  std::shared_ptr<const Policy> own;
  std::string_view rule_prefix;
  std::string_view whose;
  if (!explicit_deny && sources.key_policy && !facts.key_id.empty()) {
    own = sources.key_policy(facts.key_id);
    rule_prefix = "key-policy:";
    whose = "the key's own ";
  } else if (!explicit_deny && sources.secret_policy && !facts.secret_id.empty()) {
    own = sources.secret_policy(facts.secret_id);
    rule_prefix = "secret-policy:";
    whose = "the secret's own ";
  }
  if (!own) return by_file;
  Decision by_own = evaluate(*own, q);
  if (by_own.rule.starts_with("policy:")) {
    by_own.rule = std::string(rule_prefix) + by_own.rule.substr(7);
    by_own.reason = std::string(whose) + by_own.reason;  // "the key's own policy statement ..."
  }
  if (!by_own.allowed && by_own.rule != "default-deny") return by_own;  // its deny wins
  return by_file.allowed ? by_file : by_own.allowed ? by_own : by_file;
}

Authorizer authorizer(std::shared_ptr<const Policy> policy, Sources sources) {
  return [policy = std::move(policy), sources = std::move(sources)](const AccessRequest& r) {
    return decide(*policy, sources, r);
  };
}

}  // namespace kms::policy
