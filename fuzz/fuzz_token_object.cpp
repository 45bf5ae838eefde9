// SoftHSM2's object file parser, which decides whether token.object is damaged and whether its
// copy may mend it (docs/SECURITY.md §12): never crashes, never reads past the input; what parses
// holds only whole attributes of a known kind, laid end to end in the file, and its re-encoding
// parses back the same. Seeds: token.object files that SoftHSM2 wrote for kmsctl init and
// vault change-pin, and cut or edited variants of them (fuzz/corpus/token_object/).
#include <cstdlib>

#include "vault/token_files.hpp"

namespace {

void put_u64(kms::Bytes& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint64_t get_u64(const kms::Bytes& in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | in[static_cast<std::size_t>(i)];
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace tf = kms::token_files;
  const kms::ByteView in(data, size);
  const auto a = tf::parse_object(in);
  if (!a) return 0;
  if (size < 8) std::abort();  // no generation
  // Each value is its kind (u64be 1..5) and at least one byte; all of them, each behind its
  // 8-byte type, fit in the file after the generation (less than it when a type repeats).
  kms::Bytes again(data, data + 8);
  std::size_t used = 8;
  for (const auto& [type, value] : *a) {
    if (value.size() < 9) std::abort();
    if (const auto kind = get_u64(value); kind < 1 || kind > 5) std::abort();
    used += 8 + value.size();
    put_u64(again, type);
    again.insert(again.end(), value.begin(), value.end());
  }
  if (used > size) std::abort();
  const auto back = tf::parse_object(again);
  if (!back || *back != *a) std::abort();
  // Complete: it holds the label, serial, flags and both PIN blobs (what a repair restores).
  if (tf::is_complete_token_object(*a)) {
    for (unsigned long t :
         {tf::kTokenLabel, tf::kTokenSerial, tf::kTokenFlags, tf::kSoPin, tf::kUserPin}) {
      if (!a->contains(t)) std::abort();
    }
  }
  return 0;
}
