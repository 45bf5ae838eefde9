// bench_fill_audit: grows an existing vault's audit log by N records, fast, so that
// `kmsctl audit verify` can be measured on a large log (scripts/bench.sh). Not a test.
//
//   usage: KMSCTL_PIN=... bench_fill_audit VAULT N [BATCH]
//
// It uses the library's internals exactly as the runner does: open the vault (token
// login + unseal), take the writer lock, check the token anchor, then append records with
// audit::Log::append inside store::Tx write transactions of BATCH records (default 50,000), and
// after the last commit publish the token anchor at the new head. The chain, MACs and anchor are
// therefore genuine: `kmsctl audit verify` must accept the result.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include "audit/log.hpp"
#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
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

long long parse_count(const char* s, const char* what) {
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "bench_fill_audit: %s must be a positive integer\n", what);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: KMSCTL_PIN=... %s VAULT N [BATCH]\n", argv[0]);
    return 2;
  }
  const std::filesystem::path path = argv[1];
  const long long n = parse_count(argv[2], "N");
  const long long batch = argc == 4 ? parse_count(argv[3], "BATCH") : 50000;
  const char* pin_env = std::getenv("KMSCTL_PIN");
  if (pin_env == nullptr || *pin_env == '\0') {
    std::fprintf(stderr, "bench_fill_audit: set KMSCTL_PIN to the token user PIN\n");
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
    // A bulk load: a bigger page cache keeps the seven audit_log indexes in memory.
    vault->db().exec("PRAGMA cache_size=-262144");

    kms::files::ExclusiveLock lock(kms::lock_path(path));
    log.check_anchor();

    // A realistic mix of actions and parameter sizes.
    kms::audit::Event events[4] = {
        {kms::Action::vault_status, resource, {}},
        {kms::Action::audit_list, resource, {{"limit", 100}}},
        {kms::Action::key_create,
         "key/00000000-0000-4000-8000-000000000000",
         {{"algorithm", "aes-256-gcm"}, {"name", "bench-key"}}},
        {kms::Action::secret_get, "secret/bench/db-password", {{"version", 3}}},
    };
    const bool tty = ::isatty(2) != 0;
    kms::store::AuditRow last;
    long long done = 0;
    while (done < n) {
      const long long todo = std::min(batch, n - done);
      kms::store::Tx tx(vault->db(), kms::store::Tx::Kind::write);
      for (long long i = 0; i < todo; ++i) {
        const kms::audit::Event& ev = events[(done + i) % 4];
        last = log.append(ev, (done + i) % 97 == 0 ? "error" : "ok",
                          (done + i) % 97 == 0 ? "not_found" : "", who, kms::now());
      }
      tx.commit();
      done += todo;
      if (tty) {
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "\rbench_fill_audit: %lld/%lld records (%.0f/s)", done, n, done / s);
      }
    }
    log.publish(last);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tty) std::fprintf(stderr, "\n");
    std::printf("appended %lld records in %.1f s; audit head seq %lld\n", n, s,
                static_cast<long long>(last.seq));
    return 0;
  } catch (const kms::Error& e) {
    std::fprintf(stderr, "\nbench_fill_audit: %s\n", e.what());
    if (!e.hint().empty()) std::fprintf(stderr, "hint: %s\n", e.hint().c_str());
    return kms::exit_code(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nbench_fill_audit: %s\n", e.what());
    return 1;
  }
}
