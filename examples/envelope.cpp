// The kmsctl library as an SDK: envelope-encrypt a file and decrypt it again through the public
// headers in include/kms/ alone (no CLI code), exactly as `kmsctl file encrypt|decrypt` do.
//
//   usage: envelope WORKDIR FILE
//
// WORKDIR/vault.db is opened with the PIN in $KMSCTL_PIN; when it does not exist yet, a vault with
// a private SoftHSM2 token is created there first (the PIN must then be set too). The example
// creates (or reuses) the key alias/envelope-example, writes FILE.kenc (mode 0600, atomically),
// decrypts it to FILE.out and checks that FILE.out equals FILE. Every step is audited in the
// vault, like the CLI's. Exit status 0 when the round trip matched.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "kms/requests.hpp"
#include "kms/service.hpp"

namespace fs = std::filesystem;

namespace {

// A file descriptor closed on scope exit.
struct Fd {
  int fd;
  explicit Fd(const fs::path& p) : fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd < 0) throw kms::Error(kms::Code::not_found, "cannot open " + p.string());
  }
  ~Fd() { ::close(fd); }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::unique_ptr<kms::Service> open_or_create(const fs::path& vault, const kms::SecureBytes& pin) {
  if (fs::exists(vault)) return kms::Service::open(vault, pin);
  kms::InitOptions opts;
  opts.vault = vault;  // no module given: a private SoftHSM2 token beside the vault
  kms::InitReport report;
  auto svc = kms::Service::init(opts, pin, report);
  std::printf("created vault %s (id %s)\n", vault.c_str(), report.vault_id.c_str());
  return svc;
}

std::string key_for(kms::Service& svc) {
  const std::string alias = "alias/envelope-example";
  try {
    return kms::handle(svc, kms::req::KeyDescribe{alias}).key.id;
  } catch (const kms::Error& e) {
    if (e.code() != kms::Code::not_found) throw;
  }
  kms::keys::CreateSpec spec;
  spec.alias = alias;
  spec.description = "made by examples/envelope.cpp";
  return kms::handle(svc, kms::req::KeyCreate{spec}).key.id;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: KMSCTL_PIN=... %s WORKDIR FILE\n", argv[0]);
    return 2;
  }
  const char* pin_env = std::getenv("KMSCTL_PIN");
  if (pin_env == nullptr || *pin_env == '\0') {
    std::fprintf(stderr, "envelope: set KMSCTL_PIN to the vault's token PIN\n");
    return 2;
  }
  ::umask(077);
  try {
    kms::crypto::init();
    const kms::SecureBytes pin(kms::as_bytes(pin_env));
    const fs::path work = argv[1], input = argv[2];
    const fs::path sealed = input.string() + ".kenc", opened = input.string() + ".out";
    kms::files::make_private_dir(work);
    auto svc = open_or_create(work / "vault.db", pin);
    const std::string key = key_for(*svc);
    const kms::Context context{{"purpose", "sdk-example"}};

    {  // Encrypt: the data key is made and wrapped (and the use audited, `started`) before any
       // output; the file is published after its last frame, and then the end recorded (`ok`).
      Fd in(input);
      kms::files::AtomicFile out(sealed, /*overwrite=*/true);
      auto session = svc->file_session(kms::Action::file_encrypt, input.string(), {key});
      const kms::FileResult r =
          kms::encrypt_file(*session, in.fd, out.fd(), context, kms::envelope::kDefaultFrameSize,
                            {}, {[&] { out.commit(); }, [&] { out.take_back(); }});
      std::printf("encrypted %llu bytes in %llu frames for key %s version %lld -> %s\n",
                  static_cast<unsigned long long>(r.bytes),
                  static_cast<unsigned long long>(r.frames), r.keys.at(0).first.c_str(),
                  static_cast<long long>(r.keys.at(0).second), sealed.c_str());
    }
    {  // Decrypt: the output appears only once the final frame has verified.
      Fd in(sealed);
      kms::files::AtomicFile out(opened, /*overwrite=*/true);
      auto session = svc->file_session(kms::Action::file_decrypt, sealed.string());
      const kms::FileResult r =
          kms::decrypt_file(*session, in.fd, out.fd(), context, {},
                            {[&] { out.commit(); }, [&] { out.take_back(); }});
      std::printf("decrypted %llu bytes -> %s\n", static_cast<unsigned long long>(r.bytes),
                  opened.c_str());
    }
    if (slurp(input) != slurp(opened)) {
      std::fprintf(stderr, "envelope: the decrypted file differs from the input\n");
      return 1;
    }
    std::printf("round trip ok\n");
    return 0;
  } catch (const kms::Error& e) {
    std::fprintf(stderr, "envelope: error: %s\n", e.what());
    if (!e.hint().empty()) std::fprintf(stderr, "hint: %s\n", e.hint().c_str());
    return kms::exit_code(e.code());
  }
}
