// kmsctl agent start|stop|status: the commands of the agent, one process that keeps a vault
// open and serves the requests of the other kmsctl processes of the same user, as gpg-agent
// does for gpg (README "The agent"). The agent itself is in src/agent/; this file registers its
// commands and renders their output. Commands reach it through cli::send.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "agent/client.hpp"
#include "agent/daemon.hpp"
#include "agent/server.hpp"
#include "cli/app.hpp"
#include "kms/error.hpp"
#include "store/store.hpp"

namespace kms::cli {
namespace agent_cmd {
namespace fs = std::filesystem;

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct StartArgs {
  std::string idle = "10m";
  std::string lifetime = "2h";
  std::string socket;
  bool foreground = false;
  bool json = false;
};

void print_started(const StartArgs& a, const fs::path& socket, const fs::path& vault, pid_t pid,
                   const agent::Limits& limits) {
  if (a.json) {
    print_json({{"socket", socket.string()},
                {"pid", pid},
                {"vault", vault.string()},
                {"idle_timeout_s", limits.idle.count()},
                {"max_lifetime_s", limits.lifetime.count()}});
  } else {
    fmt::print(
        "KMSCTL_AGENT_SOCK={}; export KMSCTL_AGENT_SOCK;\necho kmsctl agent pid {} serves {};\n",
        shell_quote(socket.string()), pid, shell_quote(vault.string()));
  }
  std::fflush(stdout);
}

// The socket --socket names; else none when KMSCTL_AGENT_SOCK is set (agent::socket_from reads
// it); else the profile's agent_socket.
std::string socket_or_profile(const std::string& flag, const Globals& g) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("KMSCTL_AGENT_SOCK");
  return env != nullptr && *env != '\0' ? std::string() : g.agent_socket;
}

void start(Globals& g, const StartArgs& a) {
  // The profile's agent_socket, where commands of that profile look for their agent (start
  // does not read KMSCTL_AGENT_SOCK: it prints it).
  const agent::StartOptions options{a.socket.empty() ? g.agent_socket : a.socket,
                                    {agent::parse_duration(a.idle, "--idle-timeout"),
                                     agent::parse_duration(a.lifetime, "--max-lifetime")},
                                    a.foreground};
  here_only(g);
  // A vault in PostgreSQL is served under its connection string (its password, if it holds
  // one, stays in the agent; the vault is shown without it).
  const fs::path location = existing_vault(g);
  const bool postgres = store::is_postgres_location(location.string());
  const fs::path vault = postgres ? location : fs::absolute(location);
  SecureBytes pin = read_pin(g);
  agent::set_hint_words(&hint_text);  // its error replies carry the hint line this CLI prints
  agent::start(vault, std::move(pin), options, [&](const fs::path& socket, pid_t pid) {
    print_started(a, socket, store::shown_location(vault.string()), pid, options.limits);
  });
}

}  // namespace agent_cmd

void register_agent(CLI::App& app, Globals& g) {
  CLI::App* group = app.add_subcommand(
      "agent", "Keep the vault open for this user's kmsctl commands (like gpg-agent)");
  group->require_subcommand(1);

  auto sa = std::make_shared<agent_cmd::StartArgs>();
  CLI::App* start = group->add_subcommand(
      "start",
      "Unlock the vault once and serve this user's commands until stopped or idle; "
      "prints KMSCTL_AGENT_SOCK for eval");
  start
      ->add_option("--idle-timeout", sa->idle,
                   "Stop after this long without a request (default 10m)")
      ->type_name("DURATION");
  start->add_option("--max-lifetime", sa->lifetime, "Stop this long after starting (default 2h)")
      ->type_name("DURATION");
  start
      ->add_option("--socket", sa->socket,
                   "Listen at PATH (its directory must be yours alone; default: a new private "
                   "directory in $XDG_RUNTIME_DIR, $TMPDIR or /tmp)")
      ->type_name("PATH");
  start->add_flag("--foreground", sa->foreground,
                  "Serve in this process instead of in the background");
  start->add_flag("--json", sa->json, "Print the socket and pid as JSON");
  start->callback([&g, sa] { agent_cmd::start(g, *sa); });

  auto stop_socket = std::make_shared<std::string>();
  CLI::App* stop = group->add_subcommand("stop", "Stop the agent (KMSCTL_AGENT_SOCK or --socket)");
  stop->add_option("--socket", *stop_socket, "The agent's socket")->type_name("PATH");
  stop->callback([&g, stop_socket] {
    agent::stop(agent_cmd::socket_or_profile(*stop_socket, g));
    note("kmsctl: the agent stopped");
  });

  auto st_socket = std::make_shared<std::string>();
  auto st_json = std::make_shared<bool>(false);
  CLI::App* status =
      group->add_subcommand("status", "Show the running agent (KMSCTL_AGENT_SOCK or --socket)");
  status->add_option("--socket", *st_socket, "The agent's socket")->type_name("PATH");
  status->add_flag("--json", *st_json, "Print as JSON");
  status->callback([&g, st_socket, st_json] {
    const std::string text = agent::status(agent_cmd::socket_or_profile(*st_socket, g));
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (*st_json) return print_json(j);
    if (!j.is_object()) throw Error(Code::failed, "the agent's status is not JSON");
    fmt::print(
        "pid           {}\nvault         {}\nsocket        {}\nstarted       {}\nrequests      {}\n"
        "idle timeout  {} s\nmax lifetime  {} s\n",
        j.value("pid", 0), escape_text(j.value("vault", "")), escape_text(j.value("socket", "")),
        escape_text(j.value("started", "")), j.value("requests", 0), j.value("idle_timeout_s", 0),
        j.value("max_lifetime_s", 0));
  });
}

}  // namespace kms::cli
