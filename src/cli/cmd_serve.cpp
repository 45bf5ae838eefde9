// kmsctl serve [reload|status]: the service mode, one vault served to several users over Unix
// sockets, each request decided by policy (docs/SERVICE.md). The service itself is in
// src/serve/; this file registers its commands and renders their output.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "serve/serve.hpp"
#include <fmt/format.h>

#include "agent/client.hpp"
#include "agent/protocol.hpp"
#include "cli/app.hpp"
#include "kms/error.hpp"

namespace kms::cli {
namespace serve_cmd {
namespace fs = std::filesystem;

struct Args {
  serve::Options options;
  std::string policy;
  bool json = false;
};

std::string describe_policy(const nlohmann::json& p) {
  if (!p.is_object() || !p.contains("file") || p["file"].is_null()) {
    return "no policy file: nothing is allowed";
  }
  return fmt::format("policy {} ({} statements, sha256 {})", escape_text(p.value("file", "")),
                     p.value("statements", 0), p.value("sha256", ""));
}

std::string describe_sockets(const nlohmann::json& sockets) {
  std::string out;
  for (const auto& s : sockets) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} ({})", escape_text(s.value("path", "")), s.value("reach", ""));
  }
  return out;
}

void run(Globals& g, Args& a) {
  a.options.policy = a.policy;
  refuse_postgres_vault(g, "a kmsctl service");
  const fs::path vault = fs::absolute(existing_vault(g));
  SecureBytes pin = read_pin(g);
  agent::set_hint_words(&hint_text);  // its error replies carry the hint line this CLI prints
  serve::run(vault, std::move(pin), a.options, [&](const nlohmann::json& status) {
    if (a.json) {  // one line: a supervisor reads it as the sign that the service serves
      fmt::print("{}\n", json_text(status));
      std::fflush(stdout);
    }
    note(fmt::format("kmsctl serve: pid {} serves {} on {}; {}", status.value("pid", 0),
                     escape_text(vault.string()), describe_sockets(status["sockets"]),
                     describe_policy(status["policy"])));
  });
  note("kmsctl serve: stopped");
}

// The service's socket for `serve reload` and `serve status`: --socket, else --server /
// KMSCTL_SERVER.
std::string socket_of(const Globals& g, const std::string& flag) {
  if (!flag.empty()) return flag;
  if (!g.server.empty()) return g.server;
  throw Error(Code::usage, "no service socket named",
              "pass --socket PATH, or set KMSCTL_SERVER to the service's socket");
}

nlohmann::json control(const Globals& g, const std::string& flag, std::uint16_t op) {
  agent::Connection c = agent::Connection::open_service(socket_of(g, flag));
  const nlohmann::json j =
      nlohmann::json::parse(c.control_json(op), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) throw Error(Code::failed, "the service's answer is not JSON");
  return j;
}

}  // namespace serve_cmd

void register_serve(CLI::App& app, Globals& g) {
  auto a = std::make_shared<serve_cmd::Args>();
  CLI::App* serve = app.add_subcommand(
      "serve",
      "Serve the vault to several users over Unix sockets, each request decided by a policy "
      "(runs in the foreground; for systemd see contrib/systemd)");
  serve->require_subcommand(0, 1);
  serve
      ->add_option("--socket", a->options.socket,
                   "Listen at PATH, for every operation the policy allows (default: the sockets "
                   "systemd passes, or $RUNTIME_DIRECTORY/kmsctl.sock)")
      ->type_name("PATH");
  serve
      ->add_option("--use-only-socket", a->options.use_only_socket,
                   "Also listen at PATH for the use of keys only (encrypt, decrypt, data keys, "
                   "files, secret get): safe to forward to a build host")
      ->type_name("PATH");
  serve
      ->add_option("--policy", a->policy,
                   "The policy file (TOML or JSON, docs/POLICY.md); without one nothing is "
                   "allowed")
      ->type_name("FILE");
  serve->add_flag("--json", a->json,
                  "Print the service's sockets and policy as JSON once it serves");
  serve->callback([&g, a, serve] {
    if (serve->get_subcommands().empty()) serve_cmd::run(g, *a);
  });

  auto reload_socket = std::make_shared<std::string>();
  auto reload_json = std::make_shared<bool>(false);
  CLI::App* reload = serve->add_subcommand(
      "reload",
      "Load the service's policy file again (as SIGHUP does); a policy with problems is refused "
      "and the old one kept");
  reload->add_option("--socket", *reload_socket, "The service's socket (default: KMSCTL_SERVER)")
      ->type_name("PATH");
  reload->add_flag("--json", *reload_json, "Print what was loaded as JSON");
  reload->callback([&g, reload_socket, reload_json] {
    const nlohmann::json j = serve_cmd::control(g, *reload_socket, agent::kOpServeReload);
    if (*reload_json) return print_json(j);
    note("kmsctl: the service loaded " + serve_cmd::describe_policy(j));
  });

  auto st_socket = std::make_shared<std::string>();
  auto st_json = std::make_shared<bool>(false);
  CLI::App* status = serve->add_subcommand("status", "Show the running service");
  status->add_option("--socket", *st_socket, "The service's socket (default: KMSCTL_SERVER)")
      ->type_name("PATH");
  status->add_flag("--json", *st_json, "Print as JSON");
  status->callback([&g, st_socket, st_json] {
    const nlohmann::json j = serve_cmd::control(g, *st_socket, agent::kOpAgentStatus);
    if (*st_json) return print_json(j);
    fmt::print("pid       {}\nvault     {}\nsockets   {}\nstarted   {}\nrequests  {}\n{}\n",
               j.value("pid", 0), escape_text(j.value("vault", "")),
               serve_cmd::describe_sockets(j.value("sockets", nlohmann::json::array())),
               escape_text(j.value("started", "")), j.value("requests", 0),
               serve_cmd::describe_policy(j.value("policy", nlohmann::json())));
  });
}

}  // namespace kms::cli
