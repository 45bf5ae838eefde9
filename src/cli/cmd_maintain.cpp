// kmsctl maintain: the cron job. Rotates what is due and deletes what is scheduled.
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/error.hpp"

namespace kms::cli {

void register_maintain(CLI::App& app, Globals& g) {
  struct Args {
    bool dry_run = false, json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "maintain",
      "Rotate keys and secrets whose period has elapsed, delete keys whose deletion "
      "date has passed and purge deleted secrets past their recovery window (run from "
      "cron or a systemd timer)");
  cmd->add_flag("--dry-run", a->dry_run, "Only list what would be done");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->callback([&g, a] {
    export_for_hooks(g);
    const MaintainReport rep = run_here(g, req::Maintain{a->dry_run});
    if (a->json) {
      nlohmann::json rotated = nlohmann::json::array();
      for (const auto& [id, v] : rep.rotated) rotated.push_back({{"key_id", id}, {"version", v}});
      nlohmann::json srot = nlohmann::json::array(), sfail = nlohmann::json::array();
      for (const auto& [n, v] : rep.secrets_rotated) srot.push_back({{"name", n}, {"version", v}});
      for (const auto& [n, e] : rep.secrets_failed) sfail.push_back({{"name", n}, {"error", e}});
      nlohmann::json expired = nlohmann::json::array();
      for (const auto& [id, e] : rep.material_expired) {
        expired.push_back({{"key_id", id}, {"expired", e}});
      }
      print_json({{"dry_run", rep.dry_run},
                  {"rotated", rotated},
                  {"deleted", rep.deleted},
                  {"material_expired", expired},
                  {"secrets_rotated", srot},
                  {"secrets_failed", sfail},
                  {"secrets_purged", rep.secrets_purged}});
    } else {
      const char* verb = rep.dry_run ? "would " : "";
      for (const auto& [id, v] : rep.rotated) {
        fmt::print("{}rotate key {} to version {}\n", verb, escape_text(id), v);
      }
      for (const auto& id : rep.deleted) fmt::print("{}delete key {}\n", verb, escape_text(id));
      for (const auto& [id, e] : rep.material_expired) {
        fmt::print("{}delete the imported material of key {} (expired {})\n", verb, escape_text(id),
                   escape_text(e));
      }
      for (const auto& [n, v] : rep.secrets_rotated) {
        fmt::print("{}rotate secret {} to version {}\n", verb, escape_text(n), v);
      }
      for (const auto& n : rep.secrets_purged)
        fmt::print("{}purge secret {}\n", verb, escape_text(n));
      for (const auto& [n, e] : rep.secrets_failed) {
        fmt::print("failed to rotate secret {}: {}\n", escape_text(n), escape_text(e));
      }
      // Not under -q: from cron, a run that did nothing prints nothing (and mails nothing).
      if (rep.rotated.empty() && rep.deleted.empty() && rep.material_expired.empty() &&
          rep.secrets_rotated.empty() && rep.secrets_purged.empty() && rep.secrets_failed.empty() &&
          !quiet()) {
        fmt::print("nothing is due\n");
      }
    }
    if (!rep.secrets_failed.empty()) {
      std::vector<std::string> names;
      for (const auto& [n, e] : rep.secrets_failed) names.push_back(escape_text(n));
      throw Error(Code::failed,
                  fmt::format("{} secret rotation(s) failed: {}", rep.secrets_failed.size(),
                              fmt::join(names, ", ")),
                  "see `kmsctl secret describe NAME`; `kmsctl secret rotate NAME` resumes it");
    }
  });
}

}  // namespace kms::cli
