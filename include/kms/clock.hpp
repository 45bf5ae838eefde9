// Wall-clock time in the one textual form kmsctl stores and prints: RFC 3339, UTC, milliseconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kms {

using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;

TimePoint now() noexcept;
// "2026-11-28T09:31:02.123Z"
std::string format_rfc3339(TimePoint t);
// Accepts "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[.fff]Z" and "+HH:MM" offsets.
std::optional<TimePoint> parse_rfc3339(std::string_view text);
// A stored time plus whole days, in the same form (the input unchanged if it does not parse).
std::string add_days(const std::string& rfc3339, std::int64_t days);

}  // namespace kms
