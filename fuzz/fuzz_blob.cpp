// The ciphertext blob parser: never crashes; what parses re-encodes to the same header bytes.
#include <cstdlib>

#include "keys/blob.hpp"
#include "kms/crypto.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto p = kms::blob::parse(kms::ByteView(data, size));
  if (!p) return 0;
  const kms::Bytes again = kms::blob::encode_header(p->header);
  if (!kms::crypto::equal(again, p->header_bytes)) std::abort();
  if (p->header_bytes.size() + p->nonce.size() + p->sealed.size() != size) std::abort();
  return 0;
}
