// The agent's request parser (what a client sends it): never crashes; what parses re-encodes
// to the same bytes.
#include <cstdlib>

#include "agent/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kms::agent;
  const kms::ByteView in(data, size);
  if (const auto r = parse_request(in)) {
    const auto again = encode(*r);
    if (!again || *again != kms::Bytes(in.begin(), in.end())) std::abort();
  }
  if (const auto r = parse_reply(in)) {
    if (encode(*r) != kms::Bytes(in.begin(), in.end())) std::abort();
  }
  return 0;
}
