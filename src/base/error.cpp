#include "kms/error.hpp"

namespace kms {

std::string_view code_name(Code c) noexcept {
  switch (c) {
    case Code::failed:
      return "failed";
    case Code::usage:
      return "usage";
    case Code::not_found:
      return "not_found";
    case Code::refused:
      return "refused";
    case Code::integrity:
      return "integrity";
    case Code::unavailable:
      return "unavailable";
  }
  return "failed";
}

}  // namespace kms
