// kmsctl policy validate | check: the policy files of a vault that serves several users
// (docs/POLICY.md), checked and tried without a vault. The engine is src/policy/.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "policy/policy.hpp"
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/error.hpp"

namespace kms::cli {
namespace policy_cmd {

// "FILE:3:10: statements[0].effect: must be ..." (no line for a JSON value).
std::string problem_line(const std::string& file, const policy::Problem& p) {
  return escape_text(p.line > 0 ? fmt::format("{}:{}", file, p.text())
                                : fmt::format("{}: {}", file, p.text()));
}

nlohmann::json problem_json(const policy::Problem& p) {
  return {{"line", p.line > 0 ? nlohmann::json(p.line) : nlohmann::json()},
          {"column", p.line > 0 ? nlohmann::json(p.column) : nlohmann::json()},
          {"path", p.path},
          {"message", p.message}};
}

// The policy in `file`, or every problem it has on stderr and exit 2. With json, the problems
// go to stdout as one document first.
policy::Policy load(const std::string& file, bool json) {
  policy::LoadResult r = policy::load_file(file);
  if (r.policy) return std::move(*r.policy);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const policy::Problem& p : r.problems) arr.push_back(problem_json(p));
    print_json({{"file", file}, {"ok", false}, {"problems", arr}});
  }
  const int code = report_error(
      Error(Code::usage,
            fmt::format("policy {}: {} problem{}", file, r.problems.size(),
                        r.problems.size() == 1 ? "" : "s"),
            "fix each one listed below (docs/POLICY.md describes the format), then run "
            "`kmsctl policy validate` again"));
  if (!json) {
    for (const policy::Problem& p : r.problems) std::cerr << problem_line(file, p) << '\n';
  }
  throw ErrorReported{code};
}

void validate(const std::string& file, bool json) {
  const policy::Policy p = load(file, json);
  const std::size_t n = p.statements().size();
  if (json) {
    print_json(
        {{"file", file}, {"ok", true}, {"statements", n}, {"problems", nlohmann::json::array()}});
  } else {
    fmt::print("policy {}: {} statement{} OK\n", escape_text(file), n, n == 1 ? "" : "s");
  }
}

struct Who {
  std::int64_t uid = 0;
  std::vector<std::int64_t> gids;
};

// user:NAME or uid:N, with the groups the user database gives that user (primary first).
Who principal(const std::string& text) {
  const auto usage = [&](const std::string& what) {
    return Error(Code::usage, fmt::format("--principal {}: {}", text, what),
                 "write --principal user:NAME or --principal uid:N");
  };
  const auto colon = text.find(':');
  if (colon == std::string::npos) throw usage("expected user:NAME or uid:N");
  const std::string kind = text.substr(0, colon), rest = text.substr(colon + 1);
  passwd pw{};
  std::vector<char> buf(16384);
  passwd* entry = nullptr;
  Who w;
  if (kind == "user") {
    if (::getpwnam_r(rest.c_str(), &pw, buf.data(), buf.size(), &entry) != 0 || entry == nullptr) {
      throw Error(Code::not_found,
                  fmt::format("--principal {}: no user named {} on this system", text, rest),
                  "name a user of this system, or give uid:N");
    }
    w.uid = entry->pw_uid;
  } else if (kind == "uid") {
    std::int64_t v = -1;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
    if (ec != std::errc{} || end != rest.data() + rest.size() || v < 0 || v > 0xfffffffeLL) {
      throw usage("the uid must be a number");
    }
    w.uid = v;
    if (::getpwuid_r(static_cast<uid_t>(v), &pw, buf.data(), buf.size(), &entry) != 0) {
      entry = nullptr;
    }
  } else {
    throw usage("expected user:NAME or uid:N");
  }
  if (entry != nullptr) {
    int n = 256;
    std::vector<gid_t> groups(static_cast<std::size_t>(n));
    if (::getgrouplist(entry->pw_name, entry->pw_gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<std::size_t>(n));
      ::getgrouplist(entry->pw_name, entry->pw_gid, groups.data(), &n);
    }
    w.gids.push_back(entry->pw_gid);
    for (int i = 0; i < n; ++i) {
      const std::int64_t g = groups[static_cast<std::size_t>(i)];
      if (std::find(w.gids.begin(), w.gids.end(), g) == w.gids.end()) w.gids.push_back(g);
    }
  }
  return w;
}

// The action a policy name (any case) stands for.
Action action(const std::string& name) {
  for (const ActionInfo& a : actions()) {
    if (a.iam.size() == name.size() && !a.iam.empty() &&
        std::equal(name.begin(), name.end(), a.iam.begin(), [](char x, char y) {
          return std::tolower(static_cast<unsigned char>(x)) ==
                 std::tolower(static_cast<unsigned char>(y));
        })) {
      return a.action;
    }
  }
  throw Error(Code::usage, fmt::format("--action {}: no such action", name),
              "name one action as policies do, e.g. kms:Decrypt or secrets:GetSecretValue "
              "(docs/POLICY.md lists them)");
}

struct CheckArgs {
  std::string policy, principal, action;
  std::vector<std::string> resources, context, tags;
  bool json = false;
};

void check(const CheckArgs& a) {
  const Action act = action(a.action);
  const Who who = principal(a.principal);
  const Context context = parse_pairs(a.context, "--context");
  const policy::Tags tags = parse_pairs(a.tags, "--tag");
  const policy::Policy p = load(a.policy, a.json);
  policy::Query q;
  q.uid = who.uid;
  q.gids = who.gids;
  q.action = act;
  q.resources = a.resources;
  q.context = &context;
  q.tags = &tags;
  q.now = policy::Clock::now();
  const Decision d = policy::evaluate(p, q);
  const auto& all = p.statements();
  const auto st = std::find_if(all.begin(), all.end(),
                               [&](const policy::Statement& s) { return s.rule() == d.rule; });
  const policy::Statement* by = st == all.end() ? nullptr : &*st;
  const std::string_view iam = iam_name(act);
  if (a.json) {
    nlohmann::json statement;
    if (by != nullptr) {
      statement = {{"index", by->index},
                   {"sid", by->sid.empty() ? nlohmann::json() : nlohmann::json(by->sid)},
                   {"line", by->line > 0 ? nlohmann::json(by->line) : nlohmann::json()}};
    }
    print_json({{"decision", d.allowed ? "allow" : "deny"},
                {"rule", d.rule},
                {"statement", statement},
                {"reason", d.allowed ? nlohmann::json() : nlohmann::json(d.reason)},
                {"principal", a.principal},
                {"uid", who.uid},
                {"gids", who.gids},
                {"action", iam},
                {"resources", a.resources}});
  } else {
    std::string resources;
    for (const std::string& r : a.resources) resources += (resources.empty() ? "" : ", ") + r;
    fmt::print("{} {} for {} (uid {}) on {}\n", d.allowed ? "allow" : "deny", iam,
               escape_text(a.principal), who.uid, escape_text(resources));
    std::string where;
    if (by != nullptr) {
      where = by->line > 0 ? fmt::format(" (statements[{}], line {})", by->index, by->line)
                           : fmt::format(" (statements[{}])", by->index);
    }
    fmt::print("decided by {}{}{}\n", escape_text(d.rule), where,
               d.allowed ? "" : ": " + escape_text(d.reason));
  }
  if (!d.allowed) throw ErrorReported{exit_code(Code::refused)};
}

void add_validate(CLI::App* group, Globals&) {
  struct Args {
    std::string file;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* v = group->add_subcommand(
      "validate", "Check a policy file (TOML or JSON) and list every problem with its place");
  v->add_option("file", a->file, "The policy file")->required()->type_name("FILE");
  v->add_flag("--json", a->json, "Print the result as JSON");
  v->callback([a] { validate(a->file, a->json); });
}

void add_check(CLI::App* group, Globals&) {
  auto a = std::make_shared<CheckArgs>();
  CLI::App* c = group->add_subcommand(
      "check",
      "Decide one request by a policy file, without a vault: allow (exit 0) or deny (exit 4), "
      "and the statement that decided");
  c->add_option("--policy", a->policy, "The policy file (TOML or JSON)")
      ->required()
      ->type_name("FILE");
  c->add_option("--principal", a->principal, "Who asks: user:NAME or uid:N")
      ->required()
      ->type_name("PRINCIPAL");
  c->add_option("--action", a->action, "The action, as policies name it (kms:Decrypt)")
      ->required()
      ->type_name("ACTION");
  c->add_option("--resource", a->resources,
                "A name of the resource (key/ID, alias/NAME, secret/NAME, vault); repeat it for "
                "each name of one key")
      ->required()
      ->type_name("RESOURCE");
  c->add_option("--context", a->context, "A pair of the encryption context (repeatable)")
      ->type_name("K=V");
  c->add_option("--tag", a->tags, "A tag the resource carries (repeatable)")->type_name("K=V");
  c->add_flag("--json", a->json, "Print the decision as JSON");
  c->callback([a] { check(*a); });
}

constexpr Verb kVerbs[] = {{"validate", add_validate}, {"check", add_check}};

}  // namespace policy_cmd

std::string policy_change(const std::optional<std::string>& text,
                          const std::optional<std::string>& sha256) {
  if (!text) return "policy removed";
  // The statements counted here, as the vault counted them (it refused a policy with problems).
  const policy::LoadResult parsed = policy::parse_text(*text);
  const std::size_t n = parsed.policy ? parsed.policy->statements().size() : 0;
  return fmt::format("policy set ({} statement{}, sha256 {})", n, n == 1 ? "" : "s",
                     sha256.value_or("?"));
}

void register_policy(CLI::App& app, Globals& g) {
  CLI::App* group = app.add_subcommand(
      "policy", "Check and try the access policy of a vault that serves several users");
  group->require_subcommand(1);
  add_verbs(group, g, policy_cmd::kVerbs);
}

}  // namespace kms::cli
