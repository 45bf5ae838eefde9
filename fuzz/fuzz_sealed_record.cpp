// open_record never crashes on any blob, and never opens one that was not sealed with the key
// (a fuzzer cannot forge a GCM tag: any success on mutated input is a bug).
#include <cstdlib>

#include "kms/crypto.hpp"
#include "vault/sealed.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const kms::Bytes key(32, 0x42);
  static const kms::RecordRef where{"fuzz", "row", 1};
  static const kms::Bytes genuine = kms::seal_record(key, "vault", where, kms::as_bytes("value"));
  const kms::ByteView blob(data, size);
  const auto pt = kms::open_record(key, "vault", where, blob);
  if (pt && !kms::crypto::equal(blob, genuine)) std::abort();
  return 0;
}
