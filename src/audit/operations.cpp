// The operations on the audit log: list, verify and export, each itself audited (Runner::run).
#include "audit/operations.hpp"

#include <optional>

#include <fmt/format.h>

#include "kms/files.hpp"
#include "runner/runner.hpp"

namespace kms {

AuditOperations::AuditOperations(Runner& runner) : runner_(runner), vault_(runner.vault()) {}

std::vector<AuditRecord> AuditOperations::list(const AuditFilter& filter) {
  if (filter.limit < 1 || filter.limit > audit::kMaxListLimit) {
    throw Error(Code::usage, fmt::format("at most {} audit records were asked for: 1 to {}",
                                         filter.limit, audit::kMaxListLimit));
  }
  std::vector<AuditRecord> rows;
  audit::Event ev{Action::audit_list, "vault/" + vault_.meta().vault_id, {}};
  auto param = [&](const char* name, const std::optional<std::string>& v) {
    if (v) ev.params[name] = *v;
  };
  param("since", filter.since);
  param("until", filter.until);
  param("action", filter.action);
  param("resource", filter.resource);
  param("principal", filter.principal);
  param("outcome", filter.outcome);
  param("grant", filter.grant);
  ev.params["limit"] = filter.limit;
  // A page of a longer list (through an agent): which page it was.
  if (filter.after_seq) ev.params["after_seq"] = *filter.after_seq;
  if (filter.before_seq) ev.params["before_seq"] = *filter.before_seq;
  runner_.run(std::move(ev), [&](audit::Event&) {
    store::audit_query(vault_.db(), filter, [&](const store::AuditRow& r) { rows.push_back(r); });
  });
  return rows;
}

audit::VerifyReport AuditOperations::verify() {
  if (vault_.is_backup())
    return runner_.log().verify();  // judged against the live anchor; never written
  {
    const WriterLock lock(vault_);
    try {
      runner_.log().finish_interrupted_restore();
    } catch (const Error&) {
      // A damaged anchor: verify() below reports it.
    }
  }
  audit::VerifyReport rep = runner_.log().verify();
  audit::Event ev{Action::audit_verify, "vault/" + vault_.meta().vault_id, {}};
  ev.params["records"] = rep.records;
  ev.params["ok"] = rep.ok;
  if (rep.first_bad_seq) ev.params["first_bad_seq"] = *rep.first_bad_seq;
  try {
    if (rep.ok) {
      runner_.run(std::move(ev), [](audit::Event&) {});
    } else {
      const WriterLock lock(vault_);
      runner_.check_writable();  // a log that contradicts its anchor is not appended to
      runner_.record_failure(ev, Code::integrity);
    }
  } catch (const Error&) {
    if (rep.ok) throw;
  }
  return rep;
}

std::int64_t AuditOperations::export_to(const std::filesystem::path& dest, bool overwrite) {
  std::optional<files::AtomicFile> out;
  std::int64_t n = 0;
  runner_.run(
      {Action::audit_export, "vault/" + vault_.meta().vault_id, {{"output", dest.string()}}},
      [&](audit::Event& ev) {
        out.emplace(dest, overwrite);  // an existing file is refused, and the refusal audited
        std::string line;
        store::audit_scan(vault_.db(), [&](const store::AuditRow& r) {
          // Records written before any escaping of non-UTF-8 text, or edited in the file, export
          // too (with U+FFFD); audit verify is what judges them.
          line = audit::to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
          line.push_back('\n');
          out->write(line);
          ++n;
        });
        ev.params["records"] = n;
      });
  out->commit();
  return n;
}

}  // namespace kms
