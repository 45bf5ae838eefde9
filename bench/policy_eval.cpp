// Policy evaluation time: a policy of 1,000 statements and 10,000 grants (docs/PERFORMANCE.md,
// "Policy evaluation"). Prints the load time, then the median and p99 of single evaluations.
//
//   bench_policy_eval [EVALUATIONS]   (default 200000)
//
// Scenario "indexed": 300 users with 3 statements each, 50 group statements, 40 denies for
// everyone, 10 allows for everyone; requests of random users on random keys, with a context and
// tags, and the grants of the key. Scenario "everyone": the same number of statements, each for
// every principal and every kms: action, so that the principal index cannot narrow them (the
// worst case: every statement's resources and conditions are tried).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "policy/policy.hpp"
#include <fmt/format.h>

using namespace kms;
using namespace kms::policy;
using Steady = std::chrono::steady_clock;

namespace {

constexpr int kUsers = 300, kGroups = 50, kKeys = 2000, kGrants = 10000;

std::string indexed_policy() {
  std::string t;
  for (int u = 0; u < kUsers; ++u) {
    const int uid = 10000 + u;
    t += fmt::format(
        "[[statements]]\nsid = \"use-{0}\"\neffect = \"allow\"\nprincipals = [\"uid:{0}\"]\n"
        "actions = [\"kms:Encrypt\", \"kms:Decrypt\", \"kms:GenerateDataKey\"]\n"
        "resources = [\"key/k{1}\", \"alias/app-{1}\", \"alias/shared/+\"]\n"
        "conditions = {{ context_subset = {{ app = \"app-{1}\" }} }}\n",
        uid, u % kKeys);
    t += fmt::format(
        "[[statements]]\neffect = \"allow\"\nprincipals = [\"uid:{0}\"]\n"
        "actions = [\"secrets:GetSecretValue\", \"secrets:Describe*\"]\n"
        "resources = [\"secret/app-{0}/*\"]\n",
        uid);
    t += fmt::format(
        "[[statements]]\neffect = \"allow\"\nprincipals = [\"uid:{0}\"]\nroles = [\"read-only\"]\n"
        "resources = [\"vault\", \"key/*\"]\n"
        "conditions = {{ resource_tags = {{ team = \"t{1}\" }} }}\n",
        uid, u % 20);
  }
  for (int g = 0; g < kGroups; ++g) {
    t += fmt::format(
        "[[statements]]\neffect = \"allow\"\nprincipals = [\"gid:{}\"]\n"
        "actions = [\"kms:Describe*\", \"kms:List*\", \"kms:Decrypt\"]\n"
        "resources = [\"key/+\", \"alias/team{}-*\"]\n",
        20000 + g, g);
  }
  for (int d = 0; d < 40; ++d) {
    t += fmt::format(
        "[[statements]]\neffect = \"deny\"\nprincipals = [\"*\"]\nactions = [\"kms:*\"]\n"
        "resources = [\"key/blocked-{}\", \"alias/retired-{}-*\"]\n"
        "conditions = {{ context_keys = [\"legacy\"] }}\n",
        d, d);
  }
  for (int a = 0; a < 10; ++a) {
    t += fmt::format(
        "[[statements]]\neffect = \"allow\"\nprincipals = [\"*\"]\n"
        "actions = [\"vault:Status\", \"kms:GenerateRandom\"]\nresources = [\"vault\", "
        "\"vault/v{}\"]\n",
        a);
  }
  return t;
}

std::string everyone_policy() {
  std::string t;
  for (int i = 0; i < 1000; ++i) {
    t += fmt::format(
        "[[statements]]\neffect = \"{}\"\nprincipals = [\"*\"]\nactions = [\"kms:*\"]\n"
        "resources = [\"key/k{}\", \"alias/app-{}-*\", \"secret/+/x{}\"]\n"
        "conditions = {{ context_subset = {{ app = \"app-{}\" }} }}\n",
        i % 25 == 0 ? "deny" : "allow", i, i, i, i);
  }
  return t;
}

Policy load(const std::string& name, const std::string& text) {
  const auto t0 = Steady::now();
  LoadResult r = parse_toml(text);
  const auto t1 = Steady::now();
  if (!r.policy) {
    for (const Problem& p : r.problems) std::fprintf(stderr, "%s\n", p.text().c_str());
    std::exit(1);
  }
  fmt::print("{}: {} statements loaded in {:.1f} ms\n", name, r.policy->statements().size(),
             std::chrono::duration<double, std::milli>(t1 - t0).count());
  return std::move(*r.policy);
}

void run(const std::string& name, const Policy& policy, const GrantIndex& grants, int n) {
  std::mt19937_64 rng(42);
  const Action kinds[] = {Action::key_decrypt, Action::key_encrypt, Action::key_describe,
                          Action::key_generate_data_key, Action::secret_get};
  const auto now = Clock::now();
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(n));
  int allowed = 0;
  std::vector<std::string> names(2);
  for (int i = 0; i < n; ++i) {
    const int u = static_cast<int>(rng() % kUsers), k = static_cast<int>(rng() % kKeys);
    const std::int64_t uid = 10000 + u;
    const std::vector<std::int64_t> gids{uid, 20000 + static_cast<std::int64_t>(rng() % 60), 30000};
    const Action action = kinds[rng() % std::size(kinds)];
    const std::string key_id = fmt::format("k{}", rng() % 4 == 0 ? u : k);
    if (action == Action::secret_get) {
      names = {fmt::format("secret/app-{}/db", rng() % 2 == 0 ? uid : uid + 1)};
    } else {
      names = {"key/" + key_id, fmt::format("alias/app-{}", u)};
    }
    const Context context{{"app", fmt::format("app-{}", rng() % 2 == 0 ? u : k)}, {"env", "prod"}};
    const Tags tags{{"team", fmt::format("t{}", rng() % 20)}};
    Query q;
    q.uid = uid;
    q.gids = gids;
    q.action = action;
    q.resources = names;
    q.context = &context;
    q.tags = &tags;
    q.now = now;
    const auto t0 = Steady::now();
    const std::span<const Grant> candidates = grants.for_key(key_id);
    const Decision d = evaluate(policy, q, candidates);
    const auto t1 = Steady::now();
    allowed += d.allowed ? 1 : 0;
    ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  std::sort(ns.begin(), ns.end());
  const auto at = [&](double f) { return ns[static_cast<std::size_t>(f * (ns.size() - 1))]; };
  fmt::print(
      "{}: {} evaluations ({} allowed): median {:.2f} us, p99 {:.2f} us, max {:.1f} us "
      "(grant lookup by key included)\n",
      name, n, allowed, at(0.5) / 1000, at(0.99) / 1000, ns.back() / 1000);
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 200000;
  std::mt19937_64 rng(7);
  std::vector<Grant> all;
  all.reserve(kGrants);
  for (int i = 0; i < kGrants; ++i) {
    Grant g;
    g.id = fmt::format("grant-{}", i);
    g.key_id = fmt::format("k{}", i % kKeys);
    g.grantee_uid = 10000 + static_cast<std::int64_t>(rng() % kUsers);
    g.operations = {"kms:Decrypt", "kms:GenerateDataKey"};
    if (i % 3 == 0) g.context_subset = {{"env", "prod"}};
    if (i % 7 == 0) g.expires = Clock::now() - std::chrono::hours(1);
    all.push_back(std::move(g));
  }
  const GrantIndex grants(std::move(all));
  fmt::print("{} grants on {} keys\n", kGrants, kKeys);
  run("indexed", load("indexed", indexed_policy()), grants, n);
  run("everyone", load("everyone", everyone_policy()), grants, n);
}
