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
  std::int64_t before = 0;  // --before SEQ; 0: from the newest
  std::string output = "table";
  bool json = false;  // --json: --output json
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

// The columns a terminal gives escaped text: one per UTF-8 character (escape_text leaves only
// printable characters; wide East Asian ones count as one).
std::size_t audit_text_width(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

// The byte offset of the character after the first `chars` characters of s.
std::size_t audit_char_offset(std::string_view s, std::size_t chars) {
  std::size_t i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == 0) break;
      --chars;
    }
  }
  return i;
}

// The widest resource `audit list` shows in a table: a longer one keeps its head (its kind,
// "file/", "key/") and its tail (a file's name) around an ellipsis. `--output wide` shows it all.
constexpr std::size_t kAuditResourceWidth = 48;
constexpr std::size_t kAuditResourceHead = 14;

std::string audit_shorten(const std::string& escaped) {
  const std::size_t width = audit_text_width(escaped);
  if (width <= kAuditResourceWidth) return escaped;
  const std::size_t tail = kAuditResourceWidth - kAuditResourceHead - 1;
  return escaped.substr(0, audit_char_offset(escaped, kAuditResourceHead)) + "\u2026" +
         escaped.substr(audit_char_offset(escaped, width - tail));
}

// Where a request came from, from the record's params (FORMAT.md §8.1, §13.9): the caller's
// host ("-" in a record made before hosts were recorded), how it reached the vault ("direct":
// its own kmsctl opened the vault, "agent PID" or "service PID"), and the client's pid when one
// was recorded.
struct AuditOrigin {
  std::string host = "-", via = "direct", client = "-";
};

AuditOrigin audit_origin(const nlohmann::json& params) {
  auto shown = [](const nlohmann::json& v) {
    return escape_text(v.is_string() ? v.get<std::string>() : json_text(v));
  };
  AuditOrigin o;
  if (!params.is_object()) return o;
  if (params.contains("host")) o.host = shown(params["host"]);
  if (!params.contains("channel")) return o;
  const nlohmann::json& channel = params["channel"];
  o.via = shown(channel);
  if (channel.is_string() && params.contains(channel.get<std::string>())) {
    const nlohmann::json& server = params[channel.get<std::string>()];
    if (server.is_object() && server.contains("pid")) o.via += " " + shown(server["pid"]);
    if (server.is_object() && server.contains("client_pid")) o.client = shown(server["client_pid"]);
  }
  return o;
}

// A table of escaped cells: its header, then one row per record, made twice (once for the
// widths) rather than kept; columns as wide as their widest cell (the last one unpadded), two
// spaces apart, `right` ones aligned to the right.
template <class Cells>
void audit_table(fmt::memory_buffer& out, const std::vector<std::string>& header,
                 const std::vector<AuditRecord>& rows, const std::vector<bool>& right,
                 const Cells& cells_of) {
  std::vector<std::size_t> width(header.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], audit_text_width(row[i]));
  };
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      const std::string pad(width[i] - audit_text_width(row[i]), ' ');
      if (i > 0) line += "  ";
      if (right[i]) {
        line += pad + row[i];
      } else {
        line += row[i];
        if (i + 1 < row.size()) line += pad;
      }
    }
    fmt::format_to(std::back_inserter(out), "{}\n", line);
  };
  measure(header);
  for (const AuditRecord& r : rows) measure(cells_of(r));
  print(header);
  for (const AuditRecord& r : rows) print(cells_of(r));
}

void run_list(Globals& g, const ListArgs& a) {
  const std::string mode = a.json ? std::string("json") : a.output;
  AuditFilter f;
  f.since = normalise_time(a.since, "--since");
  f.until = normalise_time(a.until, "--until");
  f.action = opt(a.action);
  f.resource = opt(a.resource);
  f.principal = opt(a.principal);
  f.outcome = opt(a.outcome);
  f.grant = opt(a.grant);
  if (a.before > 0) f.before_seq = a.before;
  // One record more than it shows: whether the limit cut the listing (then `next` names the
  // page after). An agent answers at most kMaxReply bytes at once: through one, a long list
  // comes in pages of the same filter, each older than the last (and each audited as an
  // audit.list).
  const std::int64_t page = agent_for(g) != nullptr ? kAuditPage : audit::kMaxListLimit;
  std::vector<AuditRecord> rows;
  for (std::int64_t left = a.limit + 1; left > 0;) {
    f.limit = std::min(left, page);
    std::vector<AuditRecord> got = send(g, req::AuditList{f});
    const bool full = static_cast<std::int64_t>(got.size()) == f.limit;
    left -= static_cast<std::int64_t>(got.size());
    rows.insert(rows.end(), std::make_move_iterator(got.begin()),
                std::make_move_iterator(got.end()));
    if (!full || rows.empty()) break;
    f.before_seq = rows.back().seq;
  }
  std::optional<std::int64_t> next;
  if (static_cast<std::int64_t>(rows.size()) > a.limit) {
    rows.resize(static_cast<std::size_t>(a.limit));
    next = rows.back().seq;
  }
  // Printed only once every page came: a command that fails prints nothing on stdout.
  if (mode == "json") {
    nlohmann::json items = nlohmann::json::array();
    for (const AuditRecord& r : rows) items.push_back(audit::to_json(r));
    print_json({{"items", std::move(items)}, {"next", json_or_null(next)}});
    return;
  }
  fmt::memory_buffer text;
  if (mode == "jsonl") {
    for (const AuditRecord& r : rows) {
      fmt::format_to(std::back_inserter(text), "{}\n", json_text(audit::to_json(r)));
    }
  } else {
    // Every field escaped: a description or file name in a resource, or a record edited in the
    // file (audit verify would catch it), can neither end the row nor drive the terminal.
    if (mode == "wide") {
      audit_table(
          text,
          {"SEQ", "TIME", "PRINCIPAL", "UID", "HOST", "VIA", "CLIENT PID", "ACTION", "OUTCOME",
           "ERROR", "RESOURCE"},
          rows, {true, false, false, true, false, false, true, false, false, false, false},
          [](const AuditRecord& r) {
            AuditOrigin o = audit_origin(nlohmann::json::parse(r.params, nullptr, false));
            return std::vector<std::string>{
                std::to_string(r.seq),    escape_text(r.time),
                escape_text(r.principal), std::to_string(r.uid),
                std::move(o.host),        std::move(o.via),
                std::move(o.client),      escape_text(r.action),
                escape_text(r.outcome),   r.error_code.empty() ? "-" : escape_text(r.error_code),
                escape_text(r.resource)};
          });
    } else {
      audit_table(text, {"SEQ", "TIME", "PRINCIPAL", "ACTION", "RESOURCE", "OUTCOME"}, rows,
                  {true, false, false, false, false, false}, [](const AuditRecord& r) {
                    return std::vector<std::string>{
                        std::to_string(r.seq),
                        escape_text(r.time),
                        escape_text(r.principal),
                        escape_text(r.action),
                        audit_shorten(escape_text(r.resource)),
                        escape_text(r.outcome) +
                            (r.error_code.empty() ? "" : " (" + escape_text(r.error_code) + ")")};
                  });
    }
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (next) {
    const bool filtered =
        f.since || f.until || f.action || f.resource || f.principal || f.outcome || f.grant;
    note(fmt::format("more records: kmsctl audit list --before {}{}", *next,
                     filtered ? " (with the same filters)" : ""));
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
  list->add_option("--before", la->before,
                   "Only records older than this seq (the `next` of the previous page)")
      ->type_name("SEQ")
      ->check(CLI::PositiveNumber);
  CLI::Option* output =
      list->add_option(
              "--output", la->output,
              "table (default), wide (with the caller, its host and whole resources), json "
              "({\"items\": [...], \"next\": SEQ|null}) or jsonl (one record per line)")
          ->type_name("FORMAT")
          ->check(CLI::IsMember({"table", "wide", "json", "jsonl"}));
  list->add_flag("--json", la->json, "The same as --output json")->excludes(output);
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
