// The token anchor parser: any value either is rejected with kms::Error(integrity) or parses;
// only a value MACed with the audit key can parse, so a fuzzer never gets one through.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "audit/log.hpp"
#include "kms/error.hpp"

namespace {

class FixedAnchor final : public kms::audit::AnchorStore {
 public:
  std::vector<kms::Bytes> values;
  std::vector<kms::Bytes> load() override { return values; }
  void store(kms::ByteView v) override { values.assign(1, kms::Bytes(v.begin(), v.end())); }
  void replace(kms::ByteView v) override { store(v); }
};

const std::filesystem::path& db_path() {
  static const std::filesystem::path p =
      std::filesystem::temp_directory_path() / ("kms-fuzz-anchor-" + std::to_string(::getpid()));
  return p;
}

// The vault file and its WAL companions go when the fuzzer exits (libFuzzer calls exit()).
void remove_db() {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    std::filesystem::remove(db_path().string() + suffix, ec);
  }
}

kms::store::Db& db() {
  static kms::store::Db d = [] {
    remove_db();
    std::atexit(remove_db);
    return kms::store::Db(db_path(), kms::store::Db::Mode::create_new);
  }();
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const kms::Bytes key(32, 7);
  FixedAnchor anchor;
  anchor.values.emplace_back(data, data + size);
  kms::audit::Log log(db(), "vault", key, anchor);
  try {
    (void)log.read_anchor();
    std::abort();  // a forged anchor parsed
  } catch (const kms::Error& e) {
    if (e.code() != kms::Code::integrity) std::abort();
  }
  return 0;
}
