// kmsctl status: where the vault is, what token seals it, and the state of its audit log.
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/crypto.hpp"

namespace kms::cli {
namespace {

void run_status(Globals& g, bool json) {
  const Status s = send(g, req::Status{});
  const VaultCounts& c = s.counts;
  const std::string head_hash = crypto::to_hex(s.audit_head.hash);
  if (json) {
    print_json({
        {"vault",
         {{"path", s.vault_path},
          {"id", s.vault_id},
          {"created", s.created},
          {"schema_version", s.schema_version}}},
        {"token",
         {{"module", s.module},
          {"label", s.token.label},
          {"serial", s.token.serial},
          {"manufacturer", s.token.manufacturer},
          {"model", s.token.model},
          {"private", s.private_token}}},
        {"root_key_generation", s.root_key_generation},
        {"root_key_seal", s.root_key_seal},
        {"counts", {{"audit_records", s.audit_records}, {"keys", c.keys}, {"secrets", c.secrets}}},
        {"audit_head", {{"seq", s.audit_head.seq}, {"hash", head_hash}}},
        {"overdue",
         {{"key_rotations", c.keys_due_rotation},
          {"key_deletions", c.keys_due_deletion},
          {"secret_rotations", c.secrets_due_rotation},
          {"secret_deletions", c.secrets_due_deletion}}},
    });
    return;
  }
  fmt::print("vault        {}\n", escape_text(s.vault_path));
  fmt::print("id           {}\n", escape_text(s.vault_id));
  fmt::print("created      {}\n", escape_text(s.created));
  fmt::print("schema       {}\n", s.schema_version);
  fmt::print("token        \"{}\" serial {} ({} {}){}\n", escape_text(s.token.label),
             escape_text(s.token.serial), escape_text(s.token.manufacturer),
             escape_text(s.token.model), s.private_token ? ", private SoftHSM2 token" : "");
  fmt::print("module       {}\n", escape_text(s.module));
  fmt::print("root key     generation {}, sealing with {} in the token\n", s.root_key_generation,
             s.root_key_seal == "hmac-sha256" ? "HMAC-SHA256" : "AES-GCM");
  fmt::print("keys         {}\n", c.keys);
  fmt::print("secrets      {}\n", c.secrets);
  fmt::print("audit log    {} records, head seq {} hash {}\n", s.audit_records, s.audit_head.seq,
             head_hash);
  const std::int64_t overdue =
      c.keys_due_rotation + c.keys_due_deletion + c.secrets_due_rotation + c.secrets_due_deletion;
  if (overdue == 0) {
    fmt::print("overdue      nothing\n");
  } else {
    fmt::print(
        "overdue      {} key rotations, {} key deletions, {} secret rotations, {} secret "
        "purges (run `kmsctl maintain`)\n",
        c.keys_due_rotation, c.keys_due_deletion, c.secrets_due_rotation, c.secrets_due_deletion);
  }
}

}  // namespace

void register_status(CLI::App& app, Globals& g) {
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "status", "Show the vault, its token, counts, the audit head and overdue work");
  cmd->add_flag("--json", *json, "Print the status as JSON");
  cmd->callback([&g, json] { run_status(g, *json); });
}

}  // namespace kms::cli
