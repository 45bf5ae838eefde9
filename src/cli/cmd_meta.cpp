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

  // Only for help's listing and the completions: run_command reads `kmsctl help COMMAND...` as
  // `kmsctl COMMAND... --help` before parsing.
  auto words = std::make_shared<std::vector<std::string>>();
  CLI::App* help = app.add_subcommand(
      "help", "Show the help of COMMAND (as `kmsctl COMMAND --help`), or of kmsctl");
  help->add_option("command", *words, "A command and its subcommands: `kmsctl help secret get`")
      ->type_name("COMMAND");
  help->callback([words] {});  // not reached; keeps the words' storage alive with the tree
}

}  // namespace kms::cli
