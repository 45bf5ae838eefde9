// kmsctl maintain: the cron job. Rotates what is due and deletes what is scheduled.
#include <fmt/format.h>

#include "cli/app.hpp"

namespace kms::cli {

void register_maintain(CLI::App& app, Globals& g) {
  struct Args {
    bool dry_run = false, json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "maintain", "Rotate keys whose period has elapsed and delete keys whose deletion date has "
                  "passed (run from cron or a systemd timer)");
  cmd->add_flag("--dry-run", a->dry_run, "Only list what would be done");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->callback([&g, a] {
    const MaintainReport rep = open_service(g)->maintain(a->dry_run);
    if (a->json) {
      nlohmann::json rotated = nlohmann::json::array();
      for (const auto& [id, v] : rep.rotated) rotated.push_back({{"key_id", id}, {"version", v}});
      print_json({{"dry_run", rep.dry_run}, {"rotated", rotated}, {"deleted", rep.deleted}});
      return;
    }
    const char* verb = rep.dry_run ? "would " : "";
    for (const auto& [id, v] : rep.rotated) fmt::print("{}rotate key {} to version {}\n", verb, id, v);
    for (const auto& id : rep.deleted) fmt::print("{}delete key {}\n", verb, id);
    if (rep.rotated.empty() && rep.deleted.empty()) fmt::print("nothing is due\n");
  });
}

}  // namespace kms::cli
