// parse_rfc3339 never crashes, and what it accepts formats to a string it parses back the same.
#include <cstdlib>
#include <string_view>

#include "kms/clock.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto t = kms::parse_rfc3339(text);
  if (t) {
    const auto again = kms::parse_rfc3339(kms::format_rfc3339(*t));
    if (!again || *again != *t) std::abort();
  }
  return 0;
}
