// The grant vocabulary (kms/grants.hpp) and durations.
#include "kms/grants.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include <fmt/format.h>

#include "kms/error.hpp"

namespace kms {
namespace {

constexpr std::array<std::string_view, 3> kStates = {"active", "retired", "revoked"};

constexpr std::array<std::string_view, 12> kOperations = {
    "kms:Encrypt",     "kms:Decrypt",     "kms:ReEncrypt",   "kms:GenerateDataKey",
    "kms:DescribeKey", "kms:CreateGrant", "kms:RetireGrant", "kms:Sign",
    "kms:Verify",      "kms:GenerateMac", "kms:VerifyMac",   "kms:GetPublicKey"};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string allowed_list() {
  std::string out;
  for (std::string_view op : kOperations) {
    if (!out.empty()) out += ", ";
    out += op.substr(4);
  }
  return out;
}

std::string duration_text(std::chrono::seconds s) {
  const auto n = s.count();
  if (n % 86400 == 0) return fmt::format("{}d", n / 86400);
  if (n % 3600 == 0) return fmt::format("{}h", n / 3600);
  if (n % 60 == 0) return fmt::format("{}m", n / 60);
  return fmt::format("{}s", n);
}

}  // namespace

std::string_view grant_state_name(GrantState s) noexcept {
  return kStates[static_cast<std::size_t>(s)];
}

std::optional<GrantState> parse_grant_state(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kStates.size(); ++i) {
    if (kStates[i] == name) return static_cast<GrantState>(i);
  }
  return std::nullopt;
}

namespace grants {

std::span<const std::string_view> operations() noexcept { return kOperations; }

std::vector<std::string> canonical_operations(const std::vector<std::string>& names) {
  if (names.empty()) {
    throw Error(Code::usage, "a grant needs at least one operation",
                fmt::format("name one or more of {}", allowed_list()));
  }
  std::array<bool, kOperations.size()> given{};
  for (const std::string& n : names) {
    std::string_view bare = n;
    if (bare.size() > 4 && iequals(bare.substr(0, 4), "kms:")) bare.remove_prefix(4);
    bool found = false;
    for (std::size_t i = 0; i < kOperations.size(); ++i) {
      if (iequals(bare, kOperations[i].substr(4))) {
        given[i] = true;
        found = true;
      }
    }
    if (!found) {
      throw Error(
          Code::usage,
          fmt::format("{:?} is not an operation a grant can give (allowed: {})", n, allowed_list()),
          fmt::format("name one or more of {}", allowed_list()));
    }
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < kOperations.size(); ++i) {
    if (given[i]) out.emplace_back(kOperations[i]);
  }
  return out;
}

}  // namespace grants

std::chrono::seconds parse_duration(const std::string& text, const char* what,
                                    std::chrono::seconds max) {
  std::size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
  }
  const std::string unit = text.substr(std::min(used, text.size()));
  const long long mult = unit.empty() || unit == "s" ? 1
                         : unit == "m"               ? 60
                         : unit == "h"               ? 3600
                         : unit == "d"               ? 86400
                                                     : 0;
  if (n < 1 || mult == 0 || text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])) ||
      n > max.count() / mult) {
    throw Error(
        Code::usage,
        fmt::format("{} {}: not a duration between 1s and {}", what, text, duration_text(max)),
        "write a number with s, m, h or d, e.g. 15m");
  }
  return std::chrono::seconds(n * mult);
}

}  // namespace kms
