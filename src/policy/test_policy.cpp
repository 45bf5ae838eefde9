// Unit tests of policies: loading (TOML and JSON, every problem with where it is), the action
// names and roles, and evaluation (statements, conditions, principals, grants).
#include <chrono>
#include <string>
#include <vector>

#include "policy/policy.hpp"
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "kms/actions.hpp"
#include "kms/caller.hpp"

using namespace kms;
using namespace kms::policy;
using namespace std::chrono_literals;

namespace {

// root (uid 0, group 0) and daemon (uid 1, group 1) exist on every Debian system.
constexpr std::int64_t kRoot = 0, kDaemon = 1, kAlice = 1000, kBob = 1001, kOps = 500;

Policy load_toml(const std::string& text) {
  LoadResult r = parse_toml(text);
  for (const Problem& p : r.problems) FAIL_CHECK(p.text());
  REQUIRE(r.policy);
  return std::move(*r.policy);
}

// Whether a request is allowed, and which rule decided.
struct Ask {
  std::int64_t uid = kAlice;
  std::vector<std::int64_t> gids{kAlice};
  Action action = Action::key_decrypt;
  std::vector<std::string> resources{"key/k1"};
  Context context{};
  Tags tags{};
  Clock::time_point now = Clock::now();

  Decision on(const Policy& p, std::span<const Grant> grants = {}) const {
    Query q;
    q.uid = uid;
    q.gids = gids;
    q.action = action;
    q.resources = resources;
    q.context = &context;
    q.tags = &tags;
    q.now = now;
    return evaluate(p, q, grants);
  }
};

bool allowed(const Policy& p, const Ask& a) { return a.on(p).allowed; }

std::vector<std::string> problems(const LoadResult& r) {
  std::vector<std::string> out;
  for (const Problem& p : r.problems) out.push_back(p.text());
  return out;
}

bool any_contains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const std::string& l : lines) {
    if (l.find(needle) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("every action a caller can request has a policy name, and the name finds it again") {
  for (const ActionInfo& a : actions()) {
    // vault.reset_pin: made with the token's SO PIN in hand, never requested of a service.
    const bool internal = a.action == Action::vault_init || a.action == Action::vault_reset_pin ||
                          a.action == Action::vault_repair_token ||
                          std::string_view(a.name).starts_with("agent.") ||
                          std::string_view(a.name).starts_with("service.");
    CHECK_MESSAGE(a.iam.empty() == internal, a.name);
    if (a.iam.empty()) continue;
    const std::vector<Action> found = iam_actions(a.iam);
    CHECK(std::find(found.begin(), found.end(), a.action) != found.end());
    CHECK(iam_name(a.action) == a.iam);
  }
  CHECK(iam_actions("kms:Encrypt") == std::vector{Action::key_encrypt});
  // A file's data key is wrapped and unwrapped as data keys are.
  CHECK(iam_actions("kms:Decrypt") == std::vector{Action::key_decrypt, Action::file_decrypt});
  CHECK(iam_actions("kms:GenerateDataKey") ==
        std::vector{Action::key_generate_data_key, Action::file_encrypt});
  CHECK(iam_actions("kms:ReEncrypt") == std::vector{Action::key_reencrypt, Action::file_rewrap});
  CHECK(iam_actions("").empty());
  CHECK(iam_actions("kms:Nothing").empty());
}

TEST_CASE("every role names only known actions") {
  for (const Role& r : roles()) {
    for (std::string_view a : r.actions) CHECK_MESSAGE(!iam_actions(a).empty(), a);
  }
}

TEST_CASE("deny by default; an allow allows; an explicit deny wins over any allow") {
  const Policy p = load_toml(R"(
[[statements]]
sid = "use-k1"
effect = "allow"
principals = ["uid:1000"]
actions = ["kms:Decrypt"]
resources = ["key/k1", "key/k2"]

[[statements]]
effect = "deny"
principals = ["*"]
actions = ["kms:*"]
resources = ["key/k2"]
)");
  Ask a;
  Decision d = a.on(p);
  CHECK(d.allowed);
  CHECK(d.rule == "policy:use-k1");
  a.resources = {"key/k2"};
  d = a.on(p);
  CHECK_FALSE(d.allowed);
  CHECK(d.rule == "policy:1");
  CHECK(d.reason.find("denies kms:Decrypt") != std::string::npos);
  a.resources = {"key/k1", "key/k2"};  // the deny names the name it matched
  d = a.on(p);
  CHECK(d.reason == "policy statement 1 denies kms:Decrypt to uid 1000 on key/k2");
  a.resources = {"key/k3"};
  d = a.on(p);
  CHECK_FALSE(d.allowed);
  CHECK(d.rule == "default-deny");
  CHECK(d.reason == "no policy statement or grant allows kms:Decrypt to uid 1000 on key/k3");
  a.resources = {"key/k1"};
  a.action = Action::key_encrypt;  // not in the statement
  CHECK(a.on(p).rule == "default-deny");
  a.action = Action::key_decrypt;
  a.uid = kBob;  // another principal
  CHECK(a.on(p).rule == "default-deny");
}

TEST_CASE("an empty policy denies everything") {
  const Policy p;
  for (const ActionInfo& x : actions()) {
    Ask a;
    a.action = x.action;
    CHECK(a.on(p).rule == "default-deny");
  }
}

TEST_CASE("a deny written before or after an allow wins all the same") {
  const Policy p = load_toml(R"(
[[statements]]
effect = "deny"
principals = ["uid:1000"]
actions = ["kms:Decrypt"]
resources = ["*"]
[[statements]]
effect = "allow"
principals = ["uid:1000"]
actions = ["*"]
resources = ["*"]
)");
  Ask a;
  CHECK(a.on(p).rule == "policy:0");
  a.action = Action::key_encrypt;
  CHECK(a.on(p).rule == "policy:1");
}

TEST_CASE("action wildcards: kms:*, kms:Describe*, *, and names in any case") {
  const Policy p = load_toml(R"(
[[statements]]
effect = "allow"
principals = ["uid:1000"]
actions = ["kms:Describe*", "secrets:*", "KMS:encrypt"]
resources = ["*"]
[[statements]]
effect = "allow"
principals = ["uid:1001"]
actions = ["*"]
resources = ["*"]
)");
  Ask a;
  a.action = Action::key_describe;
  CHECK(allowed(p, a));
  a.action = Action::key_encrypt;
  CHECK(allowed(p, a));
  a.action = Action::secret_get;
  CHECK(allowed(p, a));
  a.action = Action::key_decrypt;
  CHECK_FALSE(allowed(p, a));
  a.action = Action::audit_list;
  CHECK_FALSE(allowed(p, a));
  a.uid = kBob;
  CHECK(allowed(p, a));
  a.action = Action::vault_rekey;
  CHECK(allowed(p, a));
  a.action = Action::agent_start;  // no caller can request it: never allowed
  CHECK_FALSE(allowed(p, a));
}

TEST_CASE("resource globs: * crosses /, + is exactly one segment") {
  const Policy p = load_toml(R"(
[[statements]]
sid = "star"
effect = "allow"
principals = ["uid:1000"]
actions = ["secrets:GetSecretValue"]
resources = ["secret/app/*"]
[[statements]]
sid = "plus"
effect = "allow"
principals = ["uid:1001"]
actions = ["secrets:GetSecretValue"]
resources = ["secret/+/db", "alias/+"]
)");
  Ask a;
  a.action = Action::secret_get;
  for (const char* name : {"secret/app/x", "secret/app/x/y", "secret/app/"}) {
    a.resources = {name};
    CHECK_MESSAGE(allowed(p, a), name);
  }
  a.resources = {"secret/other/x"};
  CHECK_FALSE(allowed(p, a));
  a.uid = kBob;
  for (const char* name : {"secret/prod/db", "secret/a/db", "alias/app"}) {
    a.resources = {name};
    CHECK_MESSAGE(allowed(p, a), name);
  }
  for (const char* name :
       {"secret/prod/eu/db", "secret//db", "secret/prod/dbx", "alias/a/b", "alias/"}) {
    a.resources = {name};
    CHECK_MESSAGE(!allowed(p, a), name);
  }
  // A key request matches by any of its names: its id or one of its aliases.
  a.action = Action::secret_get;
  a.resources = {"key/k9", "alias/app"};
  CHECK(allowed(p, a));
  Glob g{Glob::Kind::general, "key/*/+/*x"};
  CHECK(g.matches("key/a/b/cx"));
  CHECK(g.matches("key//b/x"));
  CHECK_FALSE(g.matches("key/a/b"));
  // Many stars against a long name stay linear: no backtracking blow-up.
  const Glob many{Glob::Kind::general, "secret/*a*a*a*a*a*a*a*a*a*a*a*a*b"};
  CHECK_FALSE(many.matches(std::string("secret/").append(5000, 'a')));
  CHECK(many.matches(std::string("secret/").append(5000, 'a').append("b")));
  const Glob seg{Glob::Kind::general, "*/+/x"};
  CHECK(seg.matches("secret/a/b/x"));
  CHECK_FALSE(seg.matches("secret/a/b/y"));
  CHECK_FALSE(seg.matches("secret//x"));
}

TEST_CASE("conditions: context_equals, context_subset, context_keys, resource_tags") {
  const Policy p = load_toml(R"(
[[statements]]
sid = "equals"
effect = "allow"
principals = ["uid:1000"]
actions = ["kms:Encrypt"]
resources = ["key/*"]
conditions = { context_equals = { app = "billing", env = "prod" } }
[[statements]]
sid = "subset"
effect = "allow"
principals = ["uid:1000"]
actions = ["kms:Decrypt"]
resources = ["key/*"]
[statements.conditions]
context_subset = { app = "billing" }
[[statements]]
sid = "keys"
effect = "allow"
principals = ["uid:1000"]
actions = ["kms:GenerateDataKey"]
resources = ["key/*"]
conditions.context_keys = ["tenant", "app"]
[[statements]]
sid = "tags"
effect = "allow"
principals = ["uid:1000"]
actions = ["kms:ReEncrypt"]
resources = ["key/*"]
conditions.resource_tags = { team = "payments" }
)");
  Ask a;
  a.action = Action::key_encrypt;
  a.context = {{"app", "billing"}, {"env", "prod"}};
  CHECK(a.on(p).rule == "policy:equals");
  a.context = {{"app", "billing"}, {"env", "prod"}, {"extra", "1"}};
  CHECK_FALSE(allowed(p, a));  // exactly: no more pairs
  a.context = {{"app", "billing"}};
  CHECK_FALSE(allowed(p, a));
  a.context = {{"app", "billing"}, {"env", "dev"}};
  CHECK_FALSE(allowed(p, a));

  a.action = Action::key_decrypt;
  a.context = {{"app", "billing"}, {"env", "x"}};
  CHECK(a.on(p).rule == "policy:subset");
  a.context = {{"app", "other"}};
  CHECK_FALSE(allowed(p, a));
  a.context = {};
  CHECK_FALSE(allowed(p, a));

  a.action = Action::key_generate_data_key;
  a.context = {{"tenant", "t1"}, {"app", "x"}, {"more", "y"}};
  CHECK(a.on(p).rule == "policy:keys");
  a.context = {{"tenant", "t1"}};
  CHECK_FALSE(allowed(p, a));

  a.action = Action::key_reencrypt;
  a.tags = {{"team", "payments"}, {"cost", "1"}};
  CHECK(a.on(p).rule == "policy:tags");
  a.tags = {{"team", "web"}};
  CHECK_FALSE(allowed(p, a));
  a.tags = {};
  CHECK_FALSE(allowed(p, a));
}

TEST_CASE("a deny with a condition denies only when its condition holds") {
  const Policy p = load_toml(R"(
[[statements]]
effect = "allow"
principals = ["*"]
actions = ["kms:Decrypt"]
resources = ["*"]
[[statements]]
sid = "no-prod"
effect = "deny"
principals = ["*"]
actions = ["kms:Decrypt"]
resources = ["*"]
conditions = { context_subset = { env = "prod" } }
)");
  Ask a;
  a.context = {{"env", "dev"}};
  CHECK(allowed(p, a));
  a.context = {{"env", "prod"}};
  CHECK(a.on(p).rule == "policy:no-prod");
}

TEST_CASE("principals: user and group names, supplementary groups, uid, gid, *") {
  const Policy p = load_toml(R"(
[[statements]]
sid = "root-user"
effect = "allow"
principals = ["user:root"]
actions = ["kms:Encrypt"]
resources = ["*"]
[[statements]]
sid = "daemon-group"
effect = "allow"
principals = ["group:daemon"]
actions = ["kms:Decrypt"]
resources = ["*"]
[[statements]]
sid = "by-uid"
effect = "allow"
principals = ["uid:1"]
actions = ["kms:ListKeys"]
resources = ["*"]
[[statements]]
sid = "by-gid"
effect = "allow"
principals = ["gid:500"]
actions = ["kms:DescribeKey"]
resources = ["*"]
[[statements]]
sid = "anyone"
effect = "allow"
principals = ["*"]
actions = ["kms:GenerateRandom"]
resources = ["*"]
)");
  Ask a;
  a.uid = kRoot;
  a.gids = {kRoot};
  a.action = Action::key_encrypt;
  CHECK(a.on(p).rule == "policy:root-user");
  a.uid = kAlice;
  a.gids = {kAlice};
  CHECK_FALSE(allowed(p, a));
  a.action = Action::key_decrypt;
  CHECK_FALSE(allowed(p, a));
  a.gids = {kAlice, kDaemon};  // daemon as a supplementary group
  CHECK(a.on(p).rule == "policy:daemon-group");
  a.action = Action::key_list;
  CHECK_FALSE(allowed(p, a));
  a.uid = kDaemon;
  CHECK(a.on(p).rule == "policy:by-uid");
  a.action = Action::key_describe;
  CHECK_FALSE(allowed(p, a));
  a.gids = {kAlice, kOps};
  CHECK(a.on(p).rule == "policy:by-gid");
  a.action = Action::random_generate;
  a.uid = 4242;
  a.gids = {};
  CHECK(a.on(p).rule == "policy:anyone");
}

TEST_CASE("roles: the auditor reads the log but decrypts nothing and reads no secret value") {
  const Policy p = load_toml(R"(
[[statements]]
sid = "auditors"
effect = "allow"
principals = ["uid:1000"]
roles = ["auditor"]
resources = ["*"]
[[statements]]
sid = "users"
effect = "allow"
principals = ["uid:1001"]
roles = ["crypto-user", "secret-user"]
resources = ["*"]
[[statements]]
sid = "admins"
effect = "allow"
principals = ["uid:1002"]
roles = ["crypto-admin", "secret-admin"]
actions = ["vault:Status"]
resources = ["*"]
)");
  Ask a;
  a.resources = {"key/k1", "vault", "secret/db"};
  for (Action x : {Action::audit_list, Action::audit_verify, Action::audit_export, Action::key_list,
                   Action::key_describe, Action::secret_describe, Action::vault_status}) {
    a.action = x;
    CHECK_MESSAGE(allowed(p, a), action_name(x));
  }
  for (Action x : {Action::key_decrypt, Action::key_encrypt, Action::file_decrypt,
                   Action::secret_get, Action::key_generate_data_key, Action::random_generate,
                   Action::key_create, Action::vault_backup}) {
    a.action = x;
    CHECK_MESSAGE(!allowed(p, a), action_name(x));
  }
  a.uid = kBob;
  for (Action x :
       {Action::key_decrypt, Action::key_encrypt, Action::file_encrypt, Action::secret_get}) {
    a.action = x;
    CHECK_MESSAGE(allowed(p, a), action_name(x));
  }
  for (Action x : {Action::audit_list, Action::key_create, Action::secret_put}) {
    a.action = x;
    CHECK_MESSAGE(!allowed(p, a), action_name(x));
  }
  a.uid = 1002;
  for (Action x : {Action::key_create, Action::key_rotate, Action::key_alias_create,
                   Action::secret_create, Action::secret_put, Action::vault_status}) {
    a.action = x;
    CHECK_MESSAGE(allowed(p, a), action_name(x));
  }
  for (Action x : {Action::key_decrypt, Action::key_encrypt, Action::secret_get}) {
    a.action = x;
    CHECK_MESSAGE(!allowed(p, a), action_name(x));
  }
}

TEST_CASE("grants: the operations, the grantee, the context, expiry and revocation") {
  const Policy p = load_toml(R"(
[[statements]]
effect = "deny"
principals = ["*"]
actions = ["kms:Decrypt"]
resources = ["key/blocked"]
)");
  const Clock::time_point now = Clock::now();
  const Grant g{.id = "g1",
                .key_id = "k1",
                .grantee_uid = kAlice,
                .operations = {"kms:Decrypt", "kms:Encrypt"},
                .context_subset = {{"app", "billing"}},
                .expires = now + 1h};
  Ask a;
  a.now = now;
  a.resources = {"key/k1", "alias/billing"};
  a.context = {{"app", "billing"}, {"n", "1"}};
  std::vector<Grant> grants{g};
  Decision d = a.on(p, grants);
  CHECK(d.allowed);
  CHECK(d.rule == "grant:g1");
  a.action = Action::file_decrypt;  // a file's data key is unwrapped as Decrypt
  CHECK(a.on(p, grants).allowed);

  a.action = Action::key_generate_data_key;  // not in the grant
  CHECK(a.on(p, grants).rule == "default-deny");
  a.action = Action::key_decrypt;

  a.context = {{"app", "web"}};  // context constraint
  CHECK_FALSE(a.on(p, grants).allowed);
  a.context = {{"app", "billing"}};

  grants[0].context_equals = Context{{"app", "billing"}, {"n", "1"}};
  CHECK_FALSE(a.on(p, grants).allowed);
  a.context = {{"app", "billing"}, {"n", "1"}};
  CHECK(a.on(p, grants).allowed);

  a.uid = kBob;  // another grantee
  CHECK_FALSE(a.on(p, grants).allowed);
  a.uid = kAlice;

  a.resources = {"key/k2"};  // another key
  CHECK_FALSE(a.on(p, grants).allowed);
  a.resources = {"key/k1"};

  a.now = now + 2h;  // expired
  CHECK_FALSE(a.on(p, grants).allowed);
  a.now = now;

  grants[0].revoked = true;
  CHECK_FALSE(a.on(p, grants).allowed);
  grants[0].revoked = false;
  grants[0].retired = true;
  CHECK_FALSE(a.on(p, grants).allowed);
  grants[0].retired = false;
  CHECK(a.on(p, grants).allowed);

  // A policy's deny wins over a grant.
  grants[0].key_id = "blocked";
  a.resources = {"key/blocked"};
  d = a.on(p, grants);
  CHECK_FALSE(d.allowed);
  CHECK(d.rule == "policy:0");
}

TEST_CASE("a grant index finds a key's grants") {
  std::vector<Grant> all;
  for (int i = 0; i < 100; ++i) {
    Grant g;
    g.id = fmt::format("g{}", i);
    g.key_id = fmt::format("k{}", i % 10);
    all.push_back(g);
  }
  const GrantIndex index(all);
  CHECK(index.for_key("k3").size() == 10);
  for (const Grant& g : index.for_key("k3")) CHECK(g.key_id == "k3");
  CHECK(index.for_key("k").empty());
  CHECK(index.for_key("zz").empty());
}

TEST_CASE("the authorizer names the vault, asks for a key's names, tags and grants") {
  const auto p = std::make_shared<const Policy>(load_toml(R"(
[[statements]]
sid = "status"
effect = "allow"
principals = ["group:daemon"]
actions = ["vault:Status", "kms:ListKeys"]
resources = ["vault"]
[[statements]]
sid = "app"
effect = "allow"
principals = ["user:daemon"]
actions = ["kms:Encrypt"]
resources = ["alias/app"]
conditions.resource_tags = { team = "a" }
)"));
  Sources s;
  s.facts = [](std::string_view r) {
    ResourceFacts f;
    if (r == "key/k1") f = {{"key/k1", "alias/app"}, {{"team", "a"}}};
    return f;
  };
  s.grants = [](std::string_view key) {
    Grant g;
    g.id = "gk2";
    g.key_id = std::string(key);
    g.grantee_uid = kAlice;
    g.operations = {"kms:Decrypt"};
    return key == "k2" ? std::vector{g} : std::vector<Grant>{};
  };
  const Authorizer auth = authorizer(p, s);
  Caller daemon;
  daemon.uid = kDaemon;
  daemon.groups = {kDaemon};
  Caller alice;
  alice.uid = kAlice;
  alice.groups = {kAlice};
  const Context none;
  CHECK(auth({daemon, Action::vault_status, "vault/v1", none}).rule == "policy:status");
  CHECK(auth({daemon, Action::key_list, "vault/v1", none}).allowed);
  CHECK_FALSE(auth({alice, Action::vault_status, "vault/v1", none}).allowed);
  CHECK(auth({daemon, Action::key_encrypt, "key/k1", none}).rule == "policy:app");
  CHECK_FALSE(auth({daemon, Action::key_encrypt, "key/k2", none}).allowed);
  CHECK(auth({alice, Action::key_decrypt, "key/k2", none}).rule == "grant:gk2");
  CHECK_FALSE(auth({alice, Action::key_decrypt, "key/k1", none}).allowed);
}

TEST_CASE("a key's own policy is evaluated with the file's: a deny in either wins") {
  const auto file = std::make_shared<const Policy>(load_toml(R"(
[[statements]]
sid = "daemon-encrypts"
effect = "allow"
principals = ["user:daemon"]
actions = ["kms:Encrypt", "kms:Decrypt"]
resources = ["key/*"]
)"));
  const auto own = std::make_shared<const Policy>(load_toml(R"(
[[statements]]
sid = "alice-decrypts"
effect = "allow"
principals = ["uid:1000"]
actions = ["kms:Decrypt"]
resources = ["*"]
[[statements]]
sid = "no-daemon-decrypt"
effect = "deny"
principals = ["user:daemon"]
actions = ["kms:Decrypt"]
resources = ["*"]
)"));
  Sources s;
  s.key_policy = [&](std::string_view key) {
    return key == "k1" ? own : std::shared_ptr<const Policy>{};
  };
  const Authorizer auth = authorizer(file, s);
  Caller daemon;
  daemon.uid = kDaemon;
  daemon.groups = {kDaemon};
  Caller alice;
  alice.uid = kAlice;
  alice.groups = {kAlice};
  const Context none;
  // The key's policy allows alice what the file does not; its deny wins over the file's allow.
  CHECK(auth({alice, Action::key_decrypt, "key/k1", none}).rule == "key-policy:alice-decrypts");
  const Decision d = auth({daemon, Action::key_decrypt, "key/k1", none});
  CHECK_FALSE(d.allowed);
  CHECK(d.rule == "key-policy:no-daemon-decrypt");
  CHECK(d.reason.starts_with("the key's own policy statement"));
  CHECK(auth({daemon, Action::key_encrypt, "key/k1", none}).rule == "policy:daemon-encrypts");
  // Another key has no policy of its own: the file alone decides.
  CHECK(auth({daemon, Action::key_decrypt, "key/k2", none}).allowed);
  CHECK_FALSE(auth({alice, Action::key_decrypt, "key/k2", none}).allowed);
}

TEST_CASE("a secret's own policy is evaluated with the file's: a deny in either wins") {
  const auto file = std::make_shared<const Policy>(load_toml(R"(
[[statements]]
sid = "daemon-reads"
effect = "allow"
principals = ["user:daemon"]
actions = ["secrets:GetSecretValue"]
resources = ["secret/app/*"]
[[statements]]
sid = "nothing-locked"
effect = "deny"
principals = ["*"]
actions = ["secrets:*"]
resources = ["secret/app/locked"]
)"));
  const auto own = std::make_shared<const Policy>(load_toml(R"(
[[statements]]
sid = "alice-reads"
effect = "allow"
principals = ["uid:1000"]
actions = ["secrets:GetSecretValue"]
resources = ["*"]
[[statements]]
sid = "no-daemon"
effect = "deny"
principals = ["user:daemon"]
actions = ["secrets:GetSecretValue"]
resources = ["*"]
)"));
  Sources s;
  s.facts = [](std::string_view resource) {
    ResourceFacts f;
    if (resource == "secret/app/db") f.secret_id = "s1";
    if (resource == "secret/app/other") f.secret_id = "s2";
    if (resource == "secret/app/locked") f.secret_id = "s3";
    return f;
  };
  std::vector<std::string> asked;
  s.secret_policy = [&](std::string_view id) {
    asked.emplace_back(id);
    return id == "s1" || id == "s3" ? own : std::shared_ptr<const Policy>{};
  };
  s.key_policy = [&](std::string_view) -> std::shared_ptr<const Policy> {
    FAIL("a request on a secret asked for a key's policy");
    return {};
  };
  const Authorizer auth = authorizer(file, s);
  Caller daemon;
  daemon.uid = kDaemon;
  daemon.groups = {kDaemon};
  Caller alice;
  alice.uid = kAlice;
  alice.groups = {kAlice};
  const Context none;
  // The secret's policy allows alice what the file does not; its deny wins over the file's allow.
  CHECK(auth({alice, Action::secret_get, "secret/app/db", none}).rule ==
        "secret-policy:alice-reads");
  const Decision d = auth({daemon, Action::secret_get, "secret/app/db", none});
  CHECK_FALSE(d.allowed);
  CHECK(d.rule == "secret-policy:no-daemon");
  CHECK(
      d.reason.starts_with("the secret's own policy statement \"no-daemon\" denies "
                           "secrets:GetSecretValue"));
  // It allows only what it names: not another action on the secret.
  CHECK(auth({alice, Action::secret_describe, "secret/app/db", none}).rule == "default-deny");
  // Another secret has no policy of its own: the file alone decides.
  CHECK(auth({daemon, Action::secret_get, "secret/app/other", none}).rule == "policy:daemon-reads");
  CHECK_FALSE(auth({alice, Action::secret_get, "secret/app/other", none}).allowed);
  // The file's explicit deny wins, and the secret's policy is not even read.
  asked.clear();
  const Decision locked = auth({alice, Action::secret_get, "secret/app/locked", none});
  CHECK_FALSE(locked.allowed);
  CHECK(locked.rule == "policy:nothing-locked");
  CHECK(asked.empty());
}

TEST_CASE("a malformed TOML file names its line and column") {
  const LoadResult r = parse_toml("[[statements]]\neffect = \"allow\"\nprincipals = [\"*\"\n");
  REQUIRE(r.problems.size() == 1);
  CHECK_FALSE(r.policy);
  CHECK(r.problems[0].line >= 3);
  CHECK(r.problems[0].text().starts_with(std::to_string(r.problems[0].line) + ":"));
}

TEST_CASE("every problem of a policy is reported at once, each at its line") {
  const LoadResult r = parse_toml(R"([[statements]]
sid = "a"
effect = "permit"
principals = ["user:no-such-user-kmsctl", "group:no-such-group-kmsctl", "bob", "uid:x"]
actions = ["kms:Decrypt", "kms:Fly", "Decrypt"]
roles = ["superuser"]
resources = ["key/a+", "bucket/x", ""]
colour = "red"

[[statements]]
sid = "a"
principals = []
actions = ["kms:Encrypt"]
resources = ["key/*"]
conditions = { context_subset = {}, ip = "1.2.3.4", context_keys = [1] }
)");
  CHECK_FALSE(r.policy);
  const std::vector<std::string> p = problems(r);
  CHECK(any_contains(p, "3:10: statements[0].effect: must be \"allow\" or \"deny\""));
  CHECK(any_contains(p, "4:"));
  CHECK(any_contains(p, "no user named \"no-such-user-kmsctl\""));
  CHECK(any_contains(p, "no group named \"no-such-group-kmsctl\""));
  CHECK(any_contains(p, "statements[0].principals[2]: principal \"bob\""));
  CHECK(any_contains(p, "statements[0].principals[3]: principal \"uid:x\": uid must be a number"));
  CHECK(any_contains(p, "5:"));
  CHECK(any_contains(p, "statements[0].actions[1]: unknown action \"kms:Fly\""));
  CHECK(any_contains(p, "statements[0].actions[2]: action \"Decrypt\" needs a service"));
  CHECK(any_contains(p, "6:"));
  CHECK(any_contains(p, "statements[0].roles[0]: unknown role \"superuser\""));
  CHECK(any_contains(p, "statements[0].resources[0]: resource \"key/a+\": + must stand"));
  CHECK(any_contains(p, "statements[0].resources[1]: resource \"bucket/x\": unknown type"));
  CHECK(any_contains(p, "statements[0].resources[2]: a resource pattern is empty"));
  CHECK(any_contains(p, "8:10: statements[0].colour: unknown field \"colour\""));
  CHECK(any_contains(p, "statements[1].sid: sid \"a\" is used by an earlier statement"));
  CHECK(any_contains(p, "10:1: statements[1]: missing effect"));
  CHECK(any_contains(p, "12:14: statements[1].principals: is empty"));
  CHECK(any_contains(p, "statements[1].conditions.context_subset: is empty"));
  CHECK(any_contains(p, "statements[1].conditions.ip: unknown condition \"ip\""));
  CHECK(any_contains(p, "statements[1].conditions.context_keys[0]: must be a string"));
  CHECK(p.size() == 18);
  // In the file's order.
  for (std::size_t i = 1; i < r.problems.size(); ++i) {
    CHECK(r.problems[i - 1].line <= r.problems[i].line);
  }
}

TEST_CASE("a policy needs statements, and nothing but version beside them") {
  CHECK(
      problems(parse_toml("")) ==
      std::vector<std::string>{"1:1: statements: missing: a policy needs at least one statement"});
  CHECK(
      problems(parse_toml("version = 2\nstatements = []\nextra = 1\n")) ==
      std::vector<std::string>{"1:11: version: version must be 1 (or left out)",
                               "2:14: statements: is empty: a policy needs at least one statement",
                               "3:9: extra: unknown field \"extra\" (version, statements)"});
  CHECK(problems(parse_json("[1]")) ==
        std::vector<std::string>{"a policy is a table with a statements array"});
}

TEST_CASE("JSON: the same policy as TOML decides the same; problems by path; syntax by line") {
  const std::string toml = R"(
version = 1
[[statements]]
sid = "use"
effect = "allow"
principals = ["user:daemon", "group:root"]
actions = ["kms:Decrypt", "kms:Describe*"]
resources = ["alias/app", "key/+"]
conditions = { context_subset = { app = "x" }, context_keys = ["app"] }
[[statements]]
effect = "deny"
principals = ["*"]
roles = ["secret-user"]
resources = ["secret/prod/*"]
)";
  const std::string json = R"({
  "version": 1,
  "statements": [
    {"sid": "use", "effect": "allow", "principals": ["user:daemon", "group:root"],
     "actions": ["kms:Decrypt", "kms:Describe*"], "resources": ["alias/app", "key/+"],
     "conditions": {"context_subset": {"app": "x"}, "context_keys": ["app"]}},
    {"effect": "deny", "principals": ["*"], "roles": ["secret-user"],
     "resources": ["secret/prod/*"]}
  ]
})";
  const Policy t = load_toml(toml);
  const LoadResult jr = parse_json(json);
  REQUIRE(jr.problems.empty());
  const Policy& j = *jr.policy;
  REQUIRE(t.statements().size() == j.statements().size());
  for (std::size_t i = 0; i < t.statements().size(); ++i) {
    const Statement &a = t.statements()[i], &b = j.statements()[i];
    CHECK(a.sid == b.sid);
    CHECK(a.allow == b.allow);
    CHECK(a.action_set == b.action_set);
    CHECK(a.actions == b.actions);
    CHECK(a.roles == b.roles);
    CHECK(a.principals.size() == b.principals.size());
    CHECK(a.resources.size() == b.resources.size());
    CHECK(a.conditions.context_subset == b.conditions.context_subset);
    CHECK(a.conditions.context_keys == b.conditions.context_keys);
  }
  for (const std::int64_t uid : {kDaemon, kAlice, kRoot}) {
    for (const Action x : {Action::key_decrypt, Action::key_describe, Action::secret_get}) {
      for (const char* res : {"alias/app", "key/k1", "key/a/b", "secret/prod/db"}) {
        for (const bool with_context : {false, true}) {
          Ask a;
          a.uid = uid;
          a.gids = {uid};
          a.action = x;
          a.resources = {res};
          if (with_context) a.context = {{"app", "x"}};
          const Decision dt = a.on(t), dj = a.on(j);
          CHECK(dt.allowed == dj.allowed);
          CHECK(dt.rule == dj.rule);
        }
      }
    }
  }
  CHECK(Ask{kDaemon, {kDaemon}, Action::key_decrypt, {"alias/app"}, {{"app", "x"}}}.on(j).allowed);
  CHECK(
      Ask{kAlice, {kAlice, kRoot}, Action::key_describe, {"key/k"}, {{"app", "x"}}}.on(j).allowed);

  // Problems name the path of the value (JSON gives no line for them).
  const std::vector<std::string> p = problems(parse_json(
      R"({"statements": [{"effect": "maybe", "principals": ["*"], "actions": ["kms:Decrypt"],
          "resources": ["key/*"]}, {"effect": "allow", "principals": "*",
          "actions": ["kms:Decrypt"], "resources": ["key/*"], "conditions": []}]})"));
  CHECK(p == std::vector<std::string>{
                 "statements[0].effect: must be \"allow\" or \"deny\"",
                 "statements[1].principals: must be an array of strings, not a string",
                 "statements[1].conditions: must be a table, not an array"});
  // A syntax error names its line and column.
  const LoadResult bad = parse_json("{\n  \"statements\": [\n    {\"effect\": \"allow\",}\n]}");
  REQUIRE(bad.problems.size() == 1);
  CHECK(bad.problems[0].line == 3);
  CHECK(bad.problems[0].text().starts_with("3:"));
  CHECK(bad.problems[0].message.find("JSON") != std::string::npos);
}

TEST_CASE("JSON: a key given twice in one object is refused, not the last one kept") {
  // A parser that keeps the last would load this deny as an allow of everything.
  const LoadResult r = parse_json(
      R"({"statements": [{"effect": "deny", "effect": "allow", "principals": ["*"],
          "actions": ["*"], "resources": ["*"]}]})");
  CHECK_FALSE(r.policy.has_value());
  CHECK(problems(r) ==
        std::vector<std::string>{"JSON: the key \"effect\" is given twice in one object"});
  // The same key in two different objects is no repeat.
  const LoadResult ok = parse_json(
      R"({"statements": [{"effect": "deny", "principals": ["*"], "actions": ["*"],
          "resources": ["*"]}, {"effect": "allow", "principals": ["*"], "actions": ["*"],
          "resources": ["*"]}]})");
  CHECK(ok.policy.has_value());
}

TEST_CASE("a statement index holds for many statements: only a caller's own are scanned") {
  std::string text;
  for (int i = 0; i < 300; ++i) {
    text += fmt::format(
        "[[statements]]\neffect = \"allow\"\nprincipals = [\"uid:{}\"]\nactions = "
        "[\"kms:Decrypt\"]\nresources = [\"key/k{}\"]\n",
        2000 + i, i);
  }
  const Policy p = load_toml(text);
  CHECK(p.statements().size() == 300);
  Ask a;
  a.uid = 2150;
  a.resources = {"key/k150"};
  CHECK(a.on(p).rule == "policy:150");
  a.resources = {"key/k151"};
  CHECK_FALSE(allowed(p, a));
}
