#include "kms/clock.hpp"

#include <fmt/format.h>

namespace kms {

TimePoint now() noexcept {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

std::string format_rfc3339(TimePoint t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", int(ymd.year()),
                     unsigned(ymd.month()), unsigned(ymd.day()), hms.hours().count(),
                     hms.minutes().count(), hms.seconds().count(), hms.subseconds().count());
}

namespace {
bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}
}  // namespace

std::optional<TimePoint> parse_rfc3339(std::string_view s) {
  using namespace std::chrono;
  int y, mo, d, h = 0, mi = 0, sec = 0, msec = 0;
  if (!digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d))
    return std::nullopt;
  const year_month_day ymd{year{y}, month{unsigned(mo)}, day{unsigned(d)}};
  if (!ymd.ok()) return std::nullopt;
  size_t pos = 10;
  minutes offset{0};
  if (pos < s.size()) {
    if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') return std::nullopt;
    if (!digits(s, pos + 1, 2, h) || s.size() < pos + 9 || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, mi) || s[pos + 6] != ':' || !digits(s, pos + 7, 2, sec))
      return std::nullopt;
    if (h > 23 || mi > 59 || sec > 60) return std::nullopt;
    pos += 9;
    if (pos < s.size() && s[pos] == '.') {
      size_t n = 0;
      int scale = 100;
      ++pos;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        if (n < 3) msec += (s[pos] - '0') * scale, scale /= 10;
        ++pos, ++n;
      }
      if (n == 0) return std::nullopt;
    }
    if (pos >= s.size()) return std::nullopt;  // a time needs a zone
    if (s[pos] == 'Z' || s[pos] == 'z') {
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      int oh, om;
      if (!digits(s, pos + 1, 2, oh) || s.size() < pos + 6 || s[pos + 3] != ':' ||
          !digits(s, pos + 4, 2, om) || oh > 23 || om > 59)
        return std::nullopt;
      offset = hours{oh} + minutes{om};
      if (s[pos] == '-') offset = -offset;
      pos += 6;
    } else {
      return std::nullopt;
    }
    if (pos != s.size()) return std::nullopt;
  }
  const TimePoint t = TimePoint{sys_days{ymd}} + hours{h} + minutes{mi} + seconds{sec} +
                      milliseconds{msec} - offset;
  // The offset or a leap second can carry a time out of the four-digit years format_rfc3339
  // writes ("0000-01-01T00:30:00+01:00" is in year -1); such a time is not one we can store.
  constexpr TimePoint first{sys_days{year{0} / January / 1}};
  constexpr TimePoint end{sys_days{year{10000} / January / 1}};
  if (t < first || t >= end) return std::nullopt;
  return t;
}

std::string add_days(const std::string& rfc3339, std::int64_t days) {
  const auto t = parse_rfc3339(rfc3339);
  if (!t) return rfc3339;
  return format_rfc3339(*t + std::chrono::days(days));
}

}  // namespace kms
