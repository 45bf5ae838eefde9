// The examples of every command, in one table: `kmsctl COMMAND --help` ends with them and the
// manual page has them, by group, in EXAMPLES. Every line names its command (`kmsctl PATH`).
#include <fmt/format.h>

#include "cli/app.hpp"

namespace kms::cli {

const std::vector<Examples>& examples() {
  static const std::vector<Examples> table = {
      {"init",
       {"kmsctl init --so-pin-file so-pin",
        "kmsctl init --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label prod"}},
      {"status", {"kmsctl status", "kmsctl status --json"}},
      {"audit list",
       {"kmsctl audit list --action key.decrypt --outcome denied --output wide",
        "kmsctl audit list --since 2026-11-28 --limit 500 --before 1200 --output jsonl"}},
      {"audit verify", {"kmsctl audit verify"}},
      {"audit export", {"kmsctl audit export -o audit.jsonl"}},
      {"key create",
       {"kmsctl key create --alias alias/app --rotation-period 90d",
        "kmsctl key create --spec EC_P256 --alias alias/release"}},
      {"key list", {"kmsctl key list", "kmsctl key list --json"}},
      {"key describe", {"kmsctl key describe alias/app"}},
      {"key enable", {"kmsctl key enable alias/app"}},
      {"key disable", {"kmsctl key disable alias/app"}},
      {"key rotate", {"kmsctl key rotate alias/app"}},
      {"key cancel-deletion", {"kmsctl key cancel-deletion alias/app"}},
      {"key versions", {"kmsctl key versions alias/app"}},
      {"key set-rotation",
       {"kmsctl key set-rotation alias/app --period 90d",
        "kmsctl key set-rotation alias/app --off"}},
      {"key schedule-deletion", {"kmsctl key schedule-deletion alias/old --pending-days 7"}},
      {"key tag", {"kmsctl key tag alias/app team=billing env=prod"}},
      {"key untag", {"kmsctl key untag alias/app env"}},
      {"key set-policy",
       {"kmsctl key set-policy alias/app policy.json", "kmsctl key set-policy alias/app --remove"}},
      {"key get-policy", {"kmsctl key get-policy alias/app"}},
      {"key public", {"kmsctl key public alias/release -o release.pem"}},
      {"key specs", {"kmsctl key specs"}},
      {"key import-params",
       {"kmsctl key import-params alias/imported -o params/",
        "kmsctl key import-params KEY_ID --wrapping-algorithm RSA_AES_KEY_WRAP_SHA_256 -o "
        "params/"}},
      {"key import",
       {"kmsctl key import alias/imported --material key.wrapped --import-token "
        "params/import-token --expires 365d"}},
      {"key alias create", {"kmsctl key alias create alias/app KEY_ID"}},
      {"key alias update", {"kmsctl key alias update alias/app NEW_KEY_ID"}},
      {"key alias delete", {"kmsctl key alias delete alias/app"}},
      {"key alias list", {"kmsctl key alias list"}},
      {"encrypt",
       {"kmsctl encrypt --key alias/app --context app=billing < data > data.kms",
        "kmsctl encrypt --key alias/app --in pw.txt --out pw.enc"}},
      {"decrypt", {"kmsctl decrypt --context app=billing < data.kms"}},
      {"re-encrypt", {"kmsctl re-encrypt --to-key alias/new --in pw.enc --out pw2.enc"}},
      {"data-key generate", {"kmsctl data-key generate --key alias/app --json"}},
      {"random", {"kmsctl random --bytes 32"}},
      {"sign",
       {"kmsctl sign --key alias/release --algorithm ECDSA_SHA_256 --in app.tar -o app.sig"}},
      {"verify",
       {"kmsctl verify --key alias/release --algorithm ECDSA_SHA_256 --signature app.sig --in "
        "app.tar",
        "kmsctl verify --public-key release.pem --algorithm ECDSA_SHA_256 --signature app.sig "
        "--in app.tar"}},
      {"mac", {"kmsctl mac --key alias/log-mac --in day.log -o day.mac"}},
      {"verify-mac", {"kmsctl verify-mac --key alias/log-mac --mac day.mac --in day.log"}},
      {"file encrypt",
       {"kmsctl file encrypt --key alias/app --key alias/dr --context build=1842 app.tar",
        "kmsctl file encrypt --recipient ci-drop.pem build.tar   # a public key: no vault"}},
      {"file decrypt",
       {"kmsctl file decrypt --context build=1842 --out-dir restored --mkdir app.tar.kenc",
        "kmsctl file decrypt - < src.tar.kenc | tar t"}},
      {"file rewrap", {"kmsctl file rewrap --to-key alias/new app.tar.kenc"}},
      {"file inspect", {"kmsctl file inspect app.tar.kenc"}},
      {"secret create",
       {"kmsctl secret create app/db-password --generate --length 24",
        "kmsctl secret create db/admin --value-file admin.json"}},
      {"secret get",
       {"kmsctl secret get app/db-password", "kmsctl secret get app/db-password --stage previous"}},
      {"secret put", {"printf %s \"$NEW\" | kmsctl secret put app/db-password --value-stdin"}},
      {"secret list", {"kmsctl secret list", "kmsctl secret list --json"}},
      {"secret describe", {"kmsctl secret describe app/db-password"}},
      {"secret versions", {"kmsctl secret versions app/db-password"}},
      {"secret delete", {"kmsctl secret delete app/old --recovery-days 7"}},
      {"secret restore", {"kmsctl secret restore app/old"}},
      {"secret rotate", {"kmsctl secret rotate db/app"}},
      {"secret set-rotation",
       {"kmsctl secret set-rotation db/app --period 30d --command /usr/local/lib/rotate-db"}},
      {"secret set-policy",
       {"kmsctl secret set-policy app/db-password policy.json",
        "kmsctl secret set-policy app/db-password --remove"}},
      {"secret get-policy", {"kmsctl secret get-policy app/db-password"}},
      {"exec",
       {"kmsctl exec --secret app/db-password=DB_PASSWORD -- ./migrate",
        "kmsctl exec --secret db/app=DB_CREDS -- sh -c 'exec ./app'"}},
      {"maintain",
       {"kmsctl maintain --dry-run",
        "kmsctl maintain -q   # from cron: silent when nothing is due"}},
      {"vault backup", {"kmsctl vault backup backup-1.db"}},
      {"vault restore", {"kmsctl vault restore backup-1.db"}},
      {"vault rekey", {"kmsctl vault rekey"}},
      {"vault migrate",
       {"PGPASSFILE=~/.pgpass kmsctl vault migrate --to 'host=db.example dbname=kms user=kms'"}},
      {"vault change-pin", {"kmsctl vault change-pin --new-pin-file new-pin"}},
      {"vault reset-pin", {"kmsctl vault reset-pin --so-pin-file so-pin --new-pin-file new-pin"}},
      {"vault check-token",
       {"kmsctl vault check-token", "kmsctl vault check-token --remove --yes"}},
      {"agent start", {"eval \"$(kmsctl agent start)\""}},
      {"agent stop", {"kmsctl agent stop"}},
      {"agent status", {"kmsctl agent status --json"}},
      {"grant create",
       {"kmsctl grant create --key alias/app --grantee user:isv --operations Encrypt,Decrypt"}},
      {"grant list", {"kmsctl grant list --key alias/app"}},
      {"grant revoke", {"kmsctl grant revoke GRANT_ID"}},
      {"grant retire", {"kmsctl grant retire GRANT_ID"}},
      {"policy validate", {"kmsctl policy validate /etc/kmsctl/policy.toml"}},
      {"policy check",
       {"kmsctl policy check --policy policy.toml --principal user:app --action kms:Decrypt "
        "--resource alias/app"}},
      {"serve", {"kmsctl serve --policy /etc/kmsctl/policy.toml"}},
      {"serve reload", {"kmsctl serve reload"}},
      {"serve status", {"kmsctl serve status"}},
      {"config list", {"kmsctl config list", "kmsctl config list --json"}},
      {"config get", {"kmsctl config get vault", "kmsctl config get output --profile work"}},
      {"config set",
       {"kmsctl config set pin_file ~/.config/kmsctl/work.pin --profile work",
        "kmsctl config set default_profile work"}},
      {"config unset", {"kmsctl config unset quiet --profile work"}},
      {"help", {"kmsctl help secret get"}},
      {"version", {"kmsctl version --json"}},
      {"completion", {"kmsctl completion bash > /usr/share/bash-completion/completions/kmsctl"}},
      {"manpage", {"kmsctl manpage > kmsctl.1 && man -l kmsctl.1"}},
  };
  return table;
}

const Examples* examples_of(std::string_view path) {
  for (const Examples& e : examples()) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

void add_example_footers(CLI::App& app, const std::string& path) {
  if (const Examples* e = examples_of(path)) {
    std::string text = "Examples:";
    for (const std::string_view line : e->lines) text += fmt::format("\n  {}", line);
    app.footer(text);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    add_example_footers(*sub, path.empty() ? sub->get_name() : path + " " + sub->get_name());
  }
}

}  // namespace kms::cli
