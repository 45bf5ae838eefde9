// kmsctl exec --secret NAME[=ENV]... [--stage previous] -- COMMAND [ARGS...]
// Reads the secrets (one audit record each, committed before anything runs), puts them in the
// environment and replaces kmsctl with COMMAND, which then owns the exit status.
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/error.hpp"

namespace kms::cli {
namespace {

bool valid_env_name(std::string_view n) {
  if (n.empty() || std::isdigit(static_cast<unsigned char>(n.front()))) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// db/app-password → DB_APP_PASSWORD; a leading digit gets a '_' in front.
std::string default_env_name(std::string_view secret) {
  std::string out;
  for (char c : secret) {
    out.push_back(std::isalnum(static_cast<unsigned char>(c))
                      ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
                      : '_');
  }
  if (!out.empty() && std::isdigit(static_cast<unsigned char>(out.front()))) out.insert(0, "_");
  return out;
}

// NAME[=ENV], split at the last '=' when what follows is a valid variable name.
std::pair<std::string, std::string> parse_binding(const std::string& spec) {
  const auto eq = spec.rfind('=');
  if (eq != std::string::npos && eq > 0 && valid_env_name(std::string_view(spec).substr(eq + 1))) {
    return {spec.substr(0, eq), spec.substr(eq + 1)};
  }
  if (eq != std::string::npos && eq + 1 == spec.size()) {
    throw Error(Code::usage, fmt::format("--secret {}: no variable name after '='", spec),
                "write --secret NAME or --secret NAME=ENV_VAR");
  }
  return {spec, default_env_name(spec)};
}

}  // namespace

void register_exec(CLI::App& app, Globals& g) {
  struct Args {
    std::vector<std::string> secrets, command;
    std::string stage{secret_stage_name(SecretStage::current)};
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "exec", "Run COMMAND with secrets in its environment (kmsctl is replaced by it)");
  cmd->add_option("--secret", a->secrets,
                  "Secret NAME, or NAME=ENV_VAR (repeatable; default variable: "
                  "the name upper-cased, other characters as _)")
      ->required()
      ->allow_extra_args(false)  // one value per --secret, so that `--` ends the options
      ->type_name("NAME[=ENV]");
  cmd->add_option("--stage", a->stage, "Which stage of every secret (default current)")
      ->check(CLI::IsMember(
          std::vector<std::string>{std::string(secret_stage_name(SecretStage::current)),
                                   std::string(secret_stage_name(SecretStage::previous))}));
  cmd->add_option("command", a->command, "The command and its arguments, after --")
      ->required()
      ->type_name("COMMAND");
  cmd->callback([&g, a] {
    std::vector<std::pair<std::string, std::string>> bindings;
    for (const auto& s : a->secrets) {
      auto b = parse_binding(s);
      secrets::check_name(b.first);
      if (!valid_env_name(b.second)) {
        throw Error(Code::usage,
                    fmt::format("--secret {}: {} is not a valid variable name", s, b.second),
                    "name one with --secret NAME=ENV_VAR");
      }
      bindings.push_back(std::move(b));
    }
    // The values in bindings' order, one audited read each: by a running agent, or here (the
    // vault and the token session closed before COMMAND runs).
    std::vector<SecureBytes> values;
    for (const auto& [name, env] : bindings) {
      values.push_back(send(g, req::SecretGet{name, stage_option(a->stage), std::nullopt,
                                              secrets::ExecUse{env, a->command.front()}})
                           .value);
    }
    close_local_vault(g);
    for (size_t i = 0; i < bindings.size(); ++i) {
      const auto& [name, env] = bindings[i];
      const SecureBytes& v = values[i];
      if (std::memchr(v.data(), 0, v.size()) != nullptr) {
        throw Error(
            Code::usage,
            fmt::format("secret {} holds a NUL byte, which an environment variable cannot", name),
            fmt::format("read it with `kmsctl secret get {}` instead", name));
      }
      ::setenv(env.c_str(), std::string(v.chars()).c_str(), 1);
    }
    std::vector<char*> argv;
    for (auto& s : a->command) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::fflush(stdout);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    throw Error(err == ENOENT ? Code::not_found : Code::failed,
                fmt::format("cannot run {}: {}", a->command.front(), std::strerror(err)),
                "check the command after --, and PATH");
  });
}

}  // namespace kms::cli
