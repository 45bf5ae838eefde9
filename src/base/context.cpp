#include "kms/context.hpp"

#include <fmt/format.h>

#include "kms/error.hpp"

namespace kms {
namespace {
void put_u32(Bytes& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
}  // namespace

Bytes encode_context(const Context& context) {
  Bytes out;
  put_u32(out, static_cast<std::uint32_t>(context.size()));
  for (const auto& [k, v] : context) {  // std::map<std::string> orders bytewise
    put_u32(out, static_cast<std::uint32_t>(k.size()));
    out.insert(out.end(), k.begin(), k.end());
    put_u32(out, static_cast<std::uint32_t>(v.size()));
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

void check_context_size(const Context& context) {
  std::size_t n = 4;
  for (const auto& [k, v] : context) n += 8 + k.size() + v.size();  // as encode_context counts
  if (n > kMaxContextBytes) {
    throw Error(Code::usage,
                fmt::format("the encryption context is {} bytes encoded, over the limit of {} "
                            "bytes (64 KiB)",
                            n, kMaxContextBytes),
                "keep it to a few short K=V pairs: it is authenticated, not encrypted, and "
                "recorded in the audit log");
  }
}

}  // namespace kms
