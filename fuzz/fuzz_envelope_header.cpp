// The file envelope header parser (docs/FORMAT.md §11.3): never crashes, never reads past the
// input, asks for more bytes only on a prefix of a header, and what parses re-encodes to the same
// bytes (given the data key that makes its tag) and checks its tag in constant time without
// crashing. Seeds: tests/vectors/envelope/*.kenc (fuzz/corpus/envelope_header/ holds a few).
#include <cstdlib>

#include "kms/crypto.hpp"
#include "kms/envelope.hpp"
#include "kms/error.hpp"

namespace {
const kms::Bytes kDataKey(kms::envelope::kDataKeySize, 0x5a);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const kms::ByteView in(data, size);
  std::optional<kms::envelope::Header> h;
  try {
    h = kms::envelope::parse_header(in);
  } catch (const kms::Error& e) {
    if (e.code() != kms::Code::integrity) std::abort();
    return 0;
  }
  if (!h) return 0;  // a prefix: more bytes needed
  if (h->encoded_size > size) std::abort();
  if (h->recipients.empty() || h->recipients.size() > kms::envelope::kMaxRecipients) std::abort();
  if (h->frame_size < kms::envelope::kMinFrameSize ||
      h->frame_size > kms::envelope::kMaxFrameSize) {
    std::abort();
  }
  (void)kms::envelope::plaintext_size(*h, size);
  // An arbitrary header almost never verifies under a fixed key; it must fail cleanly.
  try {
    kms::envelope::verify_header(*h, kDataKey);
  } catch (const kms::Error& e) {
    if (e.code() != kms::Code::integrity) std::abort();
  }
  // Re-encoding (with the commitment and tag of kDataKey) keeps every other field and byte.
  kms::envelope::Header copy = *h;
  const kms::Bytes again = kms::envelope::encode_header(copy, kDataKey);
  if (again.size() != h->encoded_size) std::abort();
  const std::size_t fixed =
      h->encoded_size - kms::envelope::kCommitmentSize - kms::envelope::kHeaderTagSize;
  if (!std::equal(again.begin(), again.begin() + static_cast<std::ptrdiff_t>(fixed), data))
    std::abort();
  const auto back = kms::envelope::parse_header(again);
  if (!back || back->context != h->context || back->recipients.size() != h->recipients.size())
    std::abort();
  kms::envelope::verify_header(*back, kDataKey);  // now it must verify
  return 0;
}
