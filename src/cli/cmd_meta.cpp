// kmsctl version | completion SHELL | manpage
#include <iostream>

#include <fmt/format.h>

#include "cli/app.hpp"

namespace kms::cli {

void register_meta(CLI::App& app, Globals&) {
  auto json = std::make_shared<bool>(false);
  CLI::App* version = app.add_subcommand("version", "Print the kmsctl version");
  version->add_flag("--json", *json, "Print as JSON");
  version->callback([json] {
    if (*json) {
      print_json({{"version", KMSCTL_VERSION}});
    } else {
      fmt::print("kmsctl {}\n", KMSCTL_VERSION);
    }
  });

  auto shell = std::make_shared<std::string>();
  CLI::App* completion =
      app.add_subcommand("completion", "Print the shell completion script (bash, zsh or fish)");
  completion->add_option("shell", *shell, "Shell")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  completion->callback([&app, shell] { std::cout << completion_script(app, *shell); });

  CLI::App* manpage = app.add_subcommand("manpage", "Print the kmsctl(1) manual page (roff)");
  manpage->callback([&app] { std::cout << man_page(app); });
}

}  // namespace kms::cli
