// Unit tests of kms::format_rfc3339 and kms::parse_rfc3339.
#include <chrono>
#include <string>

#include <doctest/doctest.h>

#include "kms/clock.hpp"

using namespace kms;
using namespace std::chrono;

namespace {

TimePoint at(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0, int ms = 0) {
  return TimePoint{sys_days{year{y} / month{mo} / day{d}}} + hours{h} + minutes{mi} + seconds{s} +
         milliseconds{ms};
}

std::string show(const std::optional<TimePoint>& t) {
  return t ? format_rfc3339(*t) : std::string("<rejected>");
}

}  // namespace

TEST_CASE("format_rfc3339 writes UTC with milliseconds and a Z") {
  CHECK(format_rfc3339(TimePoint{}) == "1970-01-01T00:00:00.000Z");
  CHECK(format_rfc3339(at(2026, 11, 28, 9, 31, 2, 123)) == "2026-11-28T09:31:02.123Z");
  CHECK(format_rfc3339(at(2024, 2, 29, 23, 59, 59, 999)) == "2024-02-29T23:59:59.999Z");
  CHECK(format_rfc3339(at(2000, 1, 1, 0, 0, 0, 7)) == "2000-01-01T00:00:00.007Z");
  CHECK(format_rfc3339(at(9999, 12, 31, 23, 59, 59, 999)) == "9999-12-31T23:59:59.999Z");
  CHECK(format_rfc3339(TimePoint{} - milliseconds{1}) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("format_rfc3339 output sorts as text in time order") {
  const TimePoint a = at(2026, 1, 9, 23, 0, 0, 0), b = at(2026, 1, 10, 1, 0, 0, 0);
  CHECK(format_rfc3339(a) < format_rfc3339(b));
  CHECK(format_rfc3339(b) < format_rfc3339(b + milliseconds{1}));
}

TEST_CASE("parse_rfc3339 accepts a date alone as midnight UTC") {
  CHECK(show(parse_rfc3339("2026-11-28")) == "2026-11-28T00:00:00.000Z");
  CHECK(show(parse_rfc3339("2024-02-29")) == "2024-02-29T00:00:00.000Z");
}

TEST_CASE("parse_rfc3339 accepts Z times with and without fractions") {
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02Z")) == "2026-11-28T09:31:02.000Z");
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02.123Z")) == "2026-11-28T09:31:02.123Z");
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02.1Z")) == "2026-11-28T09:31:02.100Z");
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02.12Z")) == "2026-11-28T09:31:02.120Z");
  // Digits past milliseconds are dropped (truncated, not rounded).
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02.123999Z")) == "2026-11-28T09:31:02.123Z");
  CHECK(show(parse_rfc3339("2026-11-28t09:31:02z")) == "2026-11-28T09:31:02.000Z");
  CHECK(show(parse_rfc3339("2026-11-28 09:31:02Z")) == "2026-11-28T09:31:02.000Z");
}

TEST_CASE("parse_rfc3339 converts numeric offsets to UTC") {
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02+01:00")) == "2026-11-28T08:31:02.000Z");
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02.5-05:30")) == "2026-11-28T15:01:02.500Z");
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02+00:00")) == "2026-11-28T09:31:02.000Z");
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02-00:00")) == "2026-11-28T09:31:02.000Z");
  // Offsets cross day, month and year boundaries.
  CHECK(show(parse_rfc3339("2026-01-01T00:30:00+01:00")) == "2025-12-31T23:30:00.000Z");
  CHECK(show(parse_rfc3339("2026-12-31T23:30:00-01:00")) == "2027-01-01T00:30:00.000Z");
  CHECK(show(parse_rfc3339("2026-11-28T09:31:02+23:59")) == "2026-11-27T09:32:02.000Z");
}

TEST_CASE("parse_rfc3339 inverts format_rfc3339") {
  for (const TimePoint t : {TimePoint{}, at(2026, 11, 28, 9, 31, 2, 123),
                            at(1999, 12, 31, 23, 59, 59, 1), at(2400, 2, 29, 12, 0, 0, 500)}) {
    const std::string s = format_rfc3339(t);
    CAPTURE(s);
    const auto back = parse_rfc3339(s);
    REQUIRE(back.has_value());
    CHECK(*back == t);
  }
}

TEST_CASE("parse_rfc3339 rejects garbage and impossible dates") {
  for (const char* bad :
       {"", "garbage", "now", "2026", "2026-11", "2026-1-28", "26-11-28", "2026/11/28", "2026-11-2",
        "2026-13-01", "2026-00-10", "2026-11-00", "2026-11-31", "2025-02-29", "2026-11-28T",
        "+2026-11-28", "２０２６-11-28"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
}

TEST_CASE("parse_rfc3339 rejects a time without a zone") {
  for (const char* bad :
       {"2026-11-28T09:31:02", "2026-11-28T09:31:02.123", "2026-11-28 09:31:02"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
}

TEST_CASE("parse_rfc3339 rejects malformed times, fractions and offsets") {
  for (const char* bad :
       {"2026-11-28T24:00:00Z", "2026-11-28T09:60:00Z", "2026-11-28T09:31:61Z",
        "2026-11-28T9:31:02Z", "2026-11-28T09:31Z", "2026-11-28T09-31-02Z", "2026-11-28T09:31:02.Z",
        "2026-11-28T09:31:02,5Z", "2026-11-28T09:31:02+0100", "2026-11-28T09:31:02+01",
        "2026-11-28T09:31:02+1:00", "2026-11-28T09:31:02 +01:00", "2026-11-28T09:31:02UTC",
        "2026-11-28X09:31:02Z"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
}

TEST_CASE("parse_rfc3339 rejects offsets out of range") {
  // RFC 3339 time-numoffset: hours 00-23, minutes 00-59.
  for (const char* bad :
       {"2026-11-28T09:31:02+24:00", "2026-11-28T09:31:02+01:60", "2026-11-28T09:31:02-99:99"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
}

TEST_CASE("parse_rfc3339 keeps results within the years 0000 to 9999") {
  // Found by fuzz_rfc3339: an offset carried year 0000 into year -1, which formats as "-001-...".
  for (const char* bad : {"0000-01-01 00:00:00+02:00", "0000-01-01T00:00:00.999+00:01",
                          "9999-12-31T23:59:59-00:01", "9999-12-31T23:59:60Z"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
  CHECK(show(parse_rfc3339("0000-01-01T00:00:00Z")) == "0000-01-01T00:00:00.000Z");
  CHECK(show(parse_rfc3339("0000-01-01T01:00:00+01:00")) == "0000-01-01T00:00:00.000Z");
  CHECK(show(parse_rfc3339("9999-12-31T23:59:59.999Z")) == "9999-12-31T23:59:59.999Z");
  CHECK(show(parse_rfc3339("9999-12-31T23:59:59+00:01")) == "9999-12-31T23:58:59.000Z");
}

TEST_CASE("parse_rfc3339 rejects trailing junk") {
  for (const char* bad :
       {"2026-11-28junk", "2026-11-28 ", "2026-11-28T09:31:02Zjunk", "2026-11-28T09:31:02Z ",
        "2026-11-28T09:31:02+01:00x", "2026-11-28T09:31:02.123Z\n"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
  // An embedded NUL is junk too (string_view carries it; a C string would stop there).
  CHECK_FALSE(parse_rfc3339(std::string_view("2026-11-28\0", 11)).has_value());
  CHECK_FALSE(parse_rfc3339(std::string_view("2026-11-28T09:31:02Z\0", 21)).has_value());
}
