// kmsctl grant create | list | revoke | retire (docs/POLICY.md §6)
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/error.hpp"
#include "kms/grants.hpp"

namespace kms::cli {
namespace grant_verbs {
namespace {

nlohmann::json grant_json(const GrantInfo& g) {
  return {
      {"grant_id", g.id},
      {"key_id", g.key_id},
      {"grantee", g.grantee},
      {"grantee_uid", g.grantee_uid},
      {"operations", g.operations},
      {"context_equals", g.context_equals ? context_json(*g.context_equals) : nlohmann::json()},
      {"context_subset", context_json(g.context_subset)},
      {"retiring_principal", json_or_null(g.retiring_principal)},
      {"retiring_uid", json_or_null(g.retiring_uid)},
      {"name", json_or_null(g.name)},
      {"created", g.created},
      {"created_by_uid", g.created_by_uid},
      {"expires", json_or_null(g.expires)},
      {"state", std::string(grant_state_name(g.state))},
      {"ended", json_or_null(g.ended)},
  };
}

// The operations, without their "kms:" prefix when `bare`, joined by commas.
std::string ops_text(const std::vector<std::string>& ops, bool bare) {
  std::string out;
  for (const std::string& o : ops) {
    if (!out.empty()) out.push_back(',');
    const std::string_view v(o);
    out.append(bare && v.starts_with("kms:") ? v.substr(4) : v);
  }
  return out;
}

std::string pairs_text(const Context& c) {
  std::string out;
  for (const auto& [k, v] : c) {
    if (!out.empty()) out.push_back(',');
    out.append(k).append("=").append(v);
  }
  return out;
}

void print_grant(const GrantInfo& g, bool json) {
  if (json) {
    print_json(grant_json(g));
    return;
  }
  const std::string ops = ops_text(g.operations, false);
  fmt::print("grant id         {}\n", escape_text(g.id));
  fmt::print("key id           {}\n", escape_text(g.key_id));
  fmt::print("grantee          {} (uid {})\n", escape_text(g.grantee), g.grantee_uid);
  fmt::print("operations       {}\n", escape_text(ops));
  if (g.context_equals) {
    fmt::print("context equals   {}\n", escape_text(pairs_text(*g.context_equals)));
  }
  if (!g.context_subset.empty()) {
    fmt::print("context includes {}\n", escape_text(pairs_text(g.context_subset)));
  }
  if (g.retiring_principal) {
    fmt::print("retiring         {}\n", escape_text(*g.retiring_principal));
  }
  if (g.name) fmt::print("name             {}\n", escape_text(*g.name));
  fmt::print("created          {} (by uid {})\n", escape_text(g.created), g.created_by_uid);
  fmt::print("expires          {}\n", escape_text(g.expires.value_or("never")));
  fmt::print("state            {}{}\n", grant_state_name(g.state),
             g.ended ? escape_text(" since " + *g.ended) : std::string());
}

std::optional<std::string> opt(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

void add_create(CLI::App* grant, Globals& g) {
  struct CreateArgs {
    std::string key, grantee, retiring, expires, name;
    std::vector<std::string> operations, equals, subset;
    bool json = false;
  };
  auto a = std::make_shared<CreateArgs>();
  CLI::App* create =
      grant->add_subcommand("create", "Let a user use some operations on one key (prints its id)");
  create->add_option("--key", a->key, "Key id or alias/NAME")->required()->type_name("KEY");
  create->add_option("--grantee", a->grantee, "Who may use the key: user:NAME or uid:N")
      ->required()
      ->type_name("PRINCIPAL");
  std::vector<std::string> names;
  for (std::string_view op : grants::operations()) names.emplace_back(op);
  std::string allowed = ops_text(names, true);
  for (std::size_t at = allowed.find(','); at != std::string::npos;
       at = allowed.find(',', at + 2)) {
    allowed.insert(at + 1, " ");  // breakable in the man page
  }
  create
      ->add_option("--operations", a->operations,
                   fmt::format("Comma-separated, of {} (kms: prefix optional)", allowed))
      ->required()
      ->delimiter(',')
      ->type_name("OPS");
  create
      ->add_option("--context-equals", a->equals,
                   "Only with exactly this encryption context (K=V, repeatable)")
      ->type_name("K=V");
  create
      ->add_option("--context-subset", a->subset,
                   "Only with an encryption context holding K=V (repeatable)")
      ->type_name("K=V");
  create
      ->add_option("--retiring-principal", a->retiring,
                   "Who else may retire it: user:NAME or uid:N")
      ->type_name("PRINCIPAL");
  create
      ->add_option("--expires", a->expires,
                   "Ends after a duration (30d, 12h; at most 3650d) or at an RFC 3339 time")
      ->type_name("WHEN");
  create->add_option("--name", a->name, "A name, unique among the key's active grants");
  create->add_flag("--json", a->json, "Print the grant as JSON");
  create->callback([&g, a] {
    grants::CreateSpec spec;
    spec.key = a->key;
    spec.grantee = a->grantee;
    spec.operations = a->operations;
    if (!a->equals.empty()) spec.context_equals = parse_pairs(a->equals, "--context-equals");
    spec.context_subset = parse_pairs(a->subset, "--context-subset");
    spec.retiring_principal = opt(a->retiring);
    spec.expires = opt(a->expires);
    spec.name = opt(a->name);
    const GrantInfo info = send(g, req::GrantCreate{spec});
    if (a->json) {
      print_json(grant_json(info));
    } else {
      fmt::print("{}\n", info.id);
    }
  });
}

void add_list(CLI::App* grant, Globals& g) {
  struct ListArgs {
    std::string key, grantee, after;
    std::int64_t limit = 100;
    bool all = false, json = false;
  };
  auto a = std::make_shared<ListArgs>();
  CLI::App* list = grant->add_subcommand("list", "List grants, oldest first, a page at a time");
  list->add_option("--key", a->key, "Only the grants of this key")->type_name("KEY");
  list->add_option("--grantee", a->grantee, "Only the grants of this user: user:NAME or uid:N")
      ->type_name("PRINCIPAL");
  list->add_flag("--all", a->all, "Also grants that ended (retired, revoked) or expired");
  list->add_option("--limit", a->limit, "At most N grants (default 100)")
      ->check(CLI::Range(std::int64_t{1}, grants::kMaxListLimit));
  list->add_option("--after", a->after, "Start after this grant id (the `next` of the last page)")
      ->type_name("GRANT_ID");
  list->add_flag("--json", a->json, "Print {\"items\": [...], \"next\": ID|null}");
  list->callback([&g, a] {
    grants::ListFilter f;
    f.key = opt(a->key);
    f.grantee = opt(a->grantee);
    f.all = a->all;
    f.after = opt(a->after);
    f.limit = a->limit;
    const GrantPage page = send(g, req::GrantList{f});
    if (a->json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& x : page.grants) arr.push_back(grant_json(x));
      print_list_json(arr, page.next);
      return;
    }
    fmt::print("{:<26}  {:<36}  {:<16}  {:<8}  {:<24}  {}\n", "GRANT ID", "KEY ID", "GRANTEE",
               "STATE", "EXPIRES", "OPERATIONS");
    for (const auto& x : page.grants) {
      fmt::print("{:<26}  {:<36}  {:<16}  {:<8}  {:<24}  {}\n", escape_text(x.id),
                 escape_text(x.key_id), escape_text(x.grantee), grant_state_name(x.state),
                 escape_text(x.expires.value_or("never")), ops_text(x.operations, true));
    }
    if (page.next) {
      note(fmt::format("more grants: kmsctl grant list --after {}", escape_text(*page.next)));
    }
  });
}

template <class R>
void end_verb(CLI::App* grant, Globals& g, const char* name, const char* help, const char* done) {
  struct Args {
    std::string grant;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = grant->add_subcommand(name, help);
  cmd->add_option("grant", a->grant, "Grant id")->required()->type_name("GRANT");
  cmd->add_flag("--json", a->json, "Print the grant as JSON");
  cmd->callback([&g, a, done] {
    const GrantInfo info = send(g, R{a->grant});
    if (a->json) {
      print_grant(info, true);
    } else {
      note(escape_text(fmt::format("grant {} {}", info.id, done)));
    }
  });
}

void add_revoke(CLI::App* grant, Globals& g) {
  end_verb<req::GrantRevoke>(grant, g, "revoke",
                             "Revoke a grant (by a manager of its key): it allows nothing more",
                             "revoked");
}

void add_retire(CLI::App* grant, Globals& g) {
  end_verb<req::GrantRetire>(grant, g, "retire",
                             "Retire a grant (by its grantee or retiring principal) once its use "
                             "is over",
                             "retired");
}

}  // namespace
}  // namespace grant_verbs

void register_grant(CLI::App& app, Globals& g) {
  CLI::App* grant =
      app.add_subcommand("grant", "Let a user use one key: create, list, revoke and retire grants");
  grant->require_subcommand(1);
  grant->fallthrough();
  static constexpr Verb kVerbs[] = {
      {"create", grant_verbs::add_create},
      {"list", grant_verbs::add_list},
      {"revoke", grant_verbs::add_revoke},
      {"retire", grant_verbs::add_retire},
  };
  add_verbs(grant, g, kVerbs);
}

}  // namespace kms::cli
