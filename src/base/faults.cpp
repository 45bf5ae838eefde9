#include "base/faults.hpp"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

namespace kms::faults {
namespace {

constexpr std::string_view kNames[] = {"write",   "sync",      "dirsync", "pkcs11",
                                       "walopen", "mechanism", "conflict"};
constexpr int kOps = 7;

struct Plan {
  int op = -1;  // index into kNames; -1: nothing armed
  long nth = 0;
};

Plan read_plan() noexcept {
  Plan p;
  const char* env = std::getenv("KMSCTL_TEST_FAULT");
  if (env == nullptr) return p;
  const std::string_view s(env);
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos) return p;
  long n = 0;
  const std::string_view digits = s.substr(colon + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size() || n < 1) return p;
  for (int i = 0; i < kOps; ++i) {
    if (s.substr(0, colon) == kNames[i]) p = {i, n};
  }
  return p;
}

const Plan& plan() noexcept {
  static const Plan p = read_plan();
  return p;
}

std::atomic<long> counts[kOps];

void report(int i, long n) noexcept {
  const std::string line = fmt::format("kmsctl: test fault: {} {} failed\n", kNames[i], n);
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

bool armed() noexcept { return plan().op >= 0; }

bool fail_now(Op op) noexcept {
  const int i = static_cast<int>(op);
  if (plan().op != i) return false;
  if (counts[i].fetch_add(1) + 1 != plan().nth) return false;
  report(i, plan().nth);
  return true;
}

bool fail_first(Op op) noexcept {
  const int i = static_cast<int>(op);
  if (plan().op != i) return false;
  const long n = counts[i].fetch_add(1) + 1;
  if (n > plan().nth) return false;
  report(i, n);
  return true;
}

bool mechanism_hidden(unsigned long mechanism) noexcept {
  return plan().op == static_cast<int>(Op::mechanism) &&
         static_cast<unsigned long>(plan().nth) == mechanism;
}

}  // namespace kms::faults
