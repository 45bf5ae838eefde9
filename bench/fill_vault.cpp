// bench_fill_vault: grows an existing vault fast, so that commands can be measured on a large one
// (scripts/bench.sh): RECORDS audit records, and optionally KEYS software keys (every other one
// with a yearly rotation period, as `kmsctl status` counts the due ones) and SECRETS secrets.
// Not a test.
//
//   usage: KMSCTL_PIN=... bench_fill_vault VAULT RECORDS [--keys N] [--secrets N] [--batch N]
//
// It uses the library's internals as the runner does: open the vault (token login + unseal), take
// the writer lock, check the token anchor, then create each key and secret through the key and
// secret stores with its `key.create` / `secret.create` record, and append the other records with
// audit::Log::append, inside store::Tx write transactions of BATCH changes (default 50,000); after
// the last commit it publishes the token anchor at the new head. The rows, their MACs and state,
// the chain and the anchor are therefore genuine: `kmsctl audit verify` must accept the result.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include "audit/log.hpp"
#include "keys/key_store.hpp"
#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "kms/key_specs.hpp"
#include "kms/vocab.hpp"
#include "secrets/secret_store.hpp"
#include "store/store.hpp"
#include "vault/vault.hpp"

namespace {

// The vault's token anchor, as the service keeps it.
class TokenAnchor final : public kms::audit::AnchorStore {
 public:
  explicit TokenAnchor(kms::Vault& v) : vault_(v) {}
  std::vector<kms::Bytes> load() override { return vault_.load_anchor(); }
  void store(kms::ByteView value) override { vault_.store_anchor(value, kms::audit::anchor_seq); }
  void replace(kms::ByteView value) override { vault_.reset_anchor(value); }

 private:
  kms::Vault& vault_;
};

long long parse_count(const char* s, const char* what, bool zero_ok = false) {
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v < (zero_ok ? 0 : 1)) {
    std::fprintf(stderr, "bench_fill_vault: %s must be a %s integer\n", what,
                 zero_ok ? "non-negative" : "positive");
    std::exit(2);
  }
  return v;
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: KMSCTL_PIN=... %s VAULT RECORDS [--keys N] [--secrets N] [--batch N]\n",
               argv0);
  return 2;
}

// Runs `make(i)` for i in [0, n) in write transactions of `batch`, printing progress as `what`.
template <class Make>
void in_batches(kms::store::Db& db, long long n, long long batch, const char* what, Make make) {
  const bool tty = ::isatty(2) != 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long long done = 0; done < n;) {
    const long long todo = std::min(batch, n - done);
    kms::store::Tx tx(db, kms::store::Tx::Kind::write);
    for (long long i = 0; i < todo; ++i) make(done + i);
    tx.commit();
    done += todo;
    if (tty) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "\rbench_fill_vault: %lld/%lld %s (%.0f/s)", done, n, what, done / s);
    }
  }
  if (tty && n > 0) std::fprintf(stderr, "\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc % 2 == 0) return usage(argv[0]);
  const std::filesystem::path path = argv[1];
  const long long n = parse_count(argv[2], "RECORDS", true);
  long long batch = 50000, n_keys = 0, n_secrets = 0;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string opt = argv[i];
    if (opt == "--keys") {
      n_keys = parse_count(argv[i + 1], "--keys", true);
    } else if (opt == "--secrets") {
      n_secrets = parse_count(argv[i + 1], "--secrets", true);
    } else if (opt == "--batch") {
      batch = parse_count(argv[i + 1], "--batch");
    } else {
      return usage(argv[0]);
    }
  }
  const char* pin_env = std::getenv("KMSCTL_PIN");
  if (pin_env == nullptr || *pin_env == '\0') {
    std::fprintf(stderr, "bench_fill_vault: set KMSCTL_PIN to the token user PIN\n");
    return 2;
  }
  try {
    kms::crypto::init();
    const kms::SecureBytes pin(kms::as_bytes(pin_env));
    ::unsetenv("KMSCTL_PIN");
    const auto t0 = std::chrono::steady_clock::now();

    std::unique_ptr<kms::Vault> vault = kms::Vault::open(path, pin);
    TokenAnchor anchor(*vault);
    kms::audit::Log log(vault->db(), vault->meta().vault_id, vault->audit_key(), anchor);
    const kms::Caller who = kms::Caller::current();
    const std::string resource = "vault/" + vault->meta().vault_id;
    // A bulk load: a bigger page cache keeps the audit_log indexes in memory.
    vault->db().exec("PRAGMA cache_size=-262144");

    kms::files::ExclusiveLock lock(kms::lock_path(path));
    log.check_anchor();
    kms::store::AuditRow last;

    kms::keys::KeyStore ks(*vault);
    in_batches(vault->db(), n_keys, batch, "keys", [&](long long i) {
      kms::keys::CreateSpec spec;
      if (i % 2 == 0) spec.rotation_days = 365;
      const kms::store::KeyRow key = ks.create(spec, kms::now());
      kms::audit::Event ev{kms::Action::key_create, "key/" + key.id, {}};
      ev.params["spec"] = std::string(kms::key_spec_name(spec.spec));
      ev.params["protection"] = std::string(kms::protection_name(spec.protection));
      if (spec.rotation_days) ev.params["rotation_period_days"] = *spec.rotation_days;
      last = log.append(ev, "ok", "", who, kms::now());
    });

    kms::secrets::SecretStore ss(*vault, ks);
    in_batches(vault->db(), n_secrets, batch, "secrets", [&](long long i) {
      kms::secrets::CreateSpec spec;
      spec.name = "bench/secret-" + std::to_string(i);
      const kms::SecureBytes value = kms::secrets::generate({});
      bool key_created = false;
      const kms::store::SecretRow s = ss.create(spec, value.view(), kms::now(), key_created);
      kms::audit::Event ev{kms::Action::secret_create, "secret/" + spec.name, {}};
      ev.params["name"] = spec.name;
      ev.params["generated"] = true;
      ev.params["key_id"] = s.key_id;
      ev.params["version"] = 1;
      if (key_created) ev.params["key_created"] = true;
      last = log.append(ev, "ok", "", who, kms::now());
    });

    // A realistic mix of actions and parameter sizes.
    kms::audit::Event events[4] = {
        {kms::Action::vault_status, resource, {}},
        {kms::Action::audit_list, resource, {{"limit", 100}}},
        {kms::Action::key_create,
         "key/00000000-0000-4000-8000-000000000000",
         {{"algorithm", "aes-256-gcm"}, {"name", "bench-key"}}},
        {kms::Action::secret_get, "secret/bench/db-password", {{"version", 3}}},
    };
    in_batches(vault->db(), n, batch, "records", [&](long long i) {
      last = log.append(events[i % 4], i % 97 == 0 ? "error" : "ok", i % 97 == 0 ? "not_found" : "",
                        who, kms::now());
    });
    if (n + n_keys + n_secrets > 0) log.publish(last);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "added %lld keys, %lld secrets and %lld other records in %.1f s; audit head seq %lld\n",
        n_keys, n_secrets, n, s, static_cast<long long>(last.seq));
    return 0;
  } catch (const kms::Error& e) {
    std::fprintf(stderr, "\nbench_fill_vault: %s\n", e.what());
    if (!e.hint().empty()) std::fprintf(stderr, "hint: %s\n", e.hint().c_str());
    return kms::exit_code(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nbench_fill_vault: %s\n", e.what());
    return 1;
  }
}
