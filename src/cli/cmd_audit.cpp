// kmsctl audit list | verify | export
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::cli {
namespace {

// Records in one page of `audit list` through an agent: 10,000 records of up to 6.7 KB each fit
// in one reply (FORMAT.md §13.1).
constexpr std::int64_t kAuditPage = 10'000;

struct ListArgs {
  std::string since, until, action, resource, principal, outcome, grant;
  std::int64_t limit = 100;
  bool json = false;
};

std::optional<std::string> normalise_time(const std::string& text, const char* flag) {
  if (text.empty()) return std::nullopt;
  const auto t = parse_rfc3339(text);
  if (!t) {
    throw Error(Code::usage, fmt::format("{} {}: not an RFC 3339 time", flag, text),
                "write it as 2026-11-28 or 2026-11-28T09:30:00Z (or with an offset, +01:00)");
  }
  return format_rfc3339(*t);
}

std::optional<std::string> opt(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

void run_list(Globals& g, const ListArgs& a) {
  AuditFilter f;
  f.since = normalise_time(a.since, "--since");
  f.until = normalise_time(a.until, "--until");
  f.action = opt(a.action);
  f.resource = opt(a.resource);
  f.principal = opt(a.principal);
  f.outcome = opt(a.outcome);
  f.grant = opt(a.grant);
  // Printed only once every page came: a command that fails prints nothing on stdout.
  nlohmann::json arr = nlohmann::json::array();
  fmt::memory_buffer text;
  if (!a.json) {
    fmt::format_to(std::back_inserter(text), "{:>6}  {:<24}  {:<10}  {:<22}  {:<44}  {}\n", "SEQ",
                   "TIME", "PRINCIPAL", "ACTION", "RESOURCE", "OUTCOME");
  }
  // An agent answers at most kMaxReply bytes at once: through one, a long list comes in pages
  // of the same filter, each older than the last (and each audited as an audit.list).
  const std::int64_t page = agent_for(g) != nullptr ? kAuditPage : a.limit;
  for (std::int64_t left = a.limit; left > 0;) {
    f.limit = std::min(left, page);
    const std::vector<AuditRecord> rows = send(g, req::AuditList{f});
    for (const AuditRecord& r : rows) {
      if (a.json) {
        arr.push_back(audit::to_json(r));
        continue;
      }
      // Every field escaped: a description or file name in a resource, or a record edited in
      // the file (audit verify would catch it), can neither end the row nor drive the terminal.
      fmt::format_to(std::back_inserter(text), "{:>6}  {:<24}  {:<10}  {:<22}  {:<44}  {}{}\n",
                     r.seq, escape_text(r.time), escape_text(r.principal), escape_text(r.action),
                     escape_text(r.resource), escape_text(r.outcome),
                     r.error_code.empty() ? "" : " (" + escape_text(r.error_code) + ")");
    }
    if (static_cast<std::int64_t>(rows.size()) < f.limit) break;
    left -= f.limit;
    f.before_seq = rows.back().seq;
  }
  if (a.json) {
    print_json(arr);
  } else {
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
}

void run_verify(Globals& g, bool json) {
  g.route.allow_backup = true;  // a backup file verifies here (an agent serves its live vault)
  const audit::VerifyReport rep = send(g, req::AuditVerify{});
  auto hash_json = [](const Bytes& h) { return crypto::to_hex(h); };
  if (json) {
    nlohmann::json j = {{"ok", rep.ok}, {"records", rep.records}};
    j["first_bad_seq"] = json_or_null(rep.first_bad_seq);
    j["problem"] = rep.ok ? nlohmann::json() : nlohmann::json(rep.problem);
    j["head"] = rep.head
                    ? nlohmann::json{{"seq", rep.head->seq}, {"hash", hash_json(rep.head->hash)}}
                    : nlohmann::json();
    j["anchor"] =
        rep.anchor ? nlohmann::json{{"seq", rep.anchor->seq}, {"hash", hash_json(rep.anchor->hash)}}
                   : nlohmann::json();
    j["rows"] = rep.rows;
    j["state_recorded_at"] =
        rep.state_recorded_at ? nlohmann::json(rep.state_recorded_at) : nlohmann::json();
    print_json(j);
  } else if (rep.ok) {
    const std::string rows =
        rep.state_recorded_at
            ? fmt::format("; {} rows match the state recorded at seq {}", rep.rows,
                          rep.state_recorded_at)
            : fmt::format("; {} rows not yet authenticated (made by an older kmsctl)", rep.rows);
    if (!rep.anchor) {
      fmt::print(
          "audit log OK: {} records verified; head seq {}{} (a backup: verified on its "
          "own, without the token anchor)\n",
          rep.records, rep.head ? rep.head->seq : 0, rows);
    } else {
      fmt::print("audit log OK: {} records verified; head seq {}; token anchor at seq {}{}\n",
                 rep.records, rep.head ? rep.head->seq : 0, rep.anchor->seq, rows);
    }
  }
  if (!rep.ok) {
    throw Error(Code::integrity,
                rep.first_bad_seq ? fmt::format("audit log verification failed at seq {}: {}",
                                                *rep.first_bad_seq, rep.problem)
                                  : fmt::format("vault verification failed: {}", rep.problem),
                "treat the vault file as tampered with: keep this copy for investigation and "
                "restore a verified backup");
  }
}

void run_export(Globals& g, const std::string& output, bool force) {
  const std::int64_t n =
      send(g, req::AuditExport{std::filesystem::absolute(output).string(), force});
  note(fmt::format("exported {} audit records to {}", n, escape_text(output)));
}

}  // namespace

void register_audit(CLI::App& app, Globals& g) {
  CLI::App* audit = app.add_subcommand("audit", "Read and verify the tamper-evident audit log");
  audit->require_subcommand(1);
  audit->fallthrough();

  auto la = std::make_shared<ListArgs>();
  CLI::App* list = audit->add_subcommand("list", "List audit records, newest first");
  list->add_option("--since", la->since, "Records at or after this RFC 3339 time")
      ->type_name("TIME");
  list->add_option("--until", la->until, "Records before this RFC 3339 time")->type_name("TIME");
  list->add_option("--action", la->action, "Only this action (e.g. vault.status)");
  list->add_option("--resource", la->resource, "Only this resource (e.g. vault/ID)");
  list->add_option("--principal", la->principal, "Only this OS user");
  list->add_option("--outcome", la->outcome, "Only this outcome")
      ->check(CLI::IsMember({"ok", "error", "denied", "started"}));
  list->add_option("--grant", la->grant, "Only records about this grant or allowed by it")
      ->type_name("GRANT_ID");
  list->add_option("--limit", la->limit, "At most N records (default 100)")
      ->check(CLI::Range(std::int64_t{1}, audit::kMaxListLimit));
  list->add_flag("--json", la->json, "Print a JSON array of records");
  list->callback([&g, la] { run_list(g, *la); });

  auto vjson = std::make_shared<bool>(false);
  CLI::App* verify = audit->add_subcommand(
      "verify", "Verify the whole chain and its token anchor; exit 5 naming the first bad record");
  verify->add_flag("--json", *vjson, "Print the report as JSON");
  verify->callback([&g, vjson] { run_verify(g, *vjson); });

  struct ExportArgs {
    std::string output;
    bool force = false;
  };
  auto ea = std::make_shared<ExportArgs>();
  CLI::App* exp = audit->add_subcommand("export", "Write the whole log as JSON Lines (for a SIEM)");
  exp->add_option("--output,-o", ea->output, "Output file (written atomically, mode 0600)")
      ->required()
      ->type_name("FILE");
  exp->add_flag("--force", ea->force, "Overwrite an existing output file");
  exp->callback([&g, ea] { run_export(g, ea->output, ea->force); });
}

}  // namespace kms::cli
