// Unit tests of escape_text: what text output does with what a user or a file name can put in a
// field.
#include <string>

#include <doctest/doctest.h>

#include "kms/text.hpp"

using namespace kms;

TEST_CASE("plain text, UTF-8 included, is shown as it was given") {
  CHECK(escape_text("") == "");
  CHECK(escape_text("app data, v2 (prod) = 100%") == "app data, v2 (prod) = 100%");
  CHECK(escape_text("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\x91") ==
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\x91");
}

TEST_CASE("line breaks, tabs, escape sequences and other controls cannot reach the terminal") {
  CHECK(escape_text("a\nb\rc\td") == "a\\nb\\rc\\td");
  CHECK(escape_text("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m");
  CHECK(escape_text(std::string("nul\0bel\x07", 8)) == "nul\\x00bel\\x07");
  CHECK(escape_text("del\x7f") == "del\\x7f");
  // C1 controls, as UTF-8 (U+009B is CSI on terminals that take C1 controls).
  CHECK(escape_text("\xc2\x9b"
                    "31m \xc2\x85") == "\\u009b31m \\u0085");
  // Line and paragraph separators, and the bidirectional controls of "Trojan Source".
  CHECK(escape_text("a\xe2\x80\xa8z\xe2\x80\xa9") == "a\\u2028z\\u2029");
  CHECK(escape_text("\xe2\x80\xae"
                    "evil\xe2\x81\xa6\xe2\x81\xa9") == "\\u202eevil\\u2066\\u2069");
}

TEST_CASE("a backslash is doubled, so an escape in the output always means an escaped byte") {
  CHECK(escape_text("C:\\keys") == "C:\\\\keys");
  CHECK(escape_text("\\n") == "\\\\n");
  CHECK(escape_text("\n") == "\\n");
}

TEST_CASE("bytes that are not UTF-8 are shown as \\xNN, each one, and the rest resumes") {
  CHECK(escape_text("caf\xe9") == "caf\\xe9");                       // Latin-1
  CHECK(escape_text("\xc3") == "\\xc3");                             // cut short
  CHECK(escape_text("\xc3(") == "\\xc3(");                           // bad continuation
  CHECK(escape_text("\xc0\xaf") == "\\xc0\\xaf");                    // overlong '/'
  CHECK(escape_text("\xe0\x80\xaf") == "\\xe0\\x80\\xaf");           // overlong, 3 bytes
  CHECK(escape_text("\xed\xa0\x80") == "\\xed\\xa0\\x80");           // a surrogate
  CHECK(escape_text("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  CHECK(escape_text("\xff\xfe ok") == "\\xff\\xfe ok");
  CHECK(escape_text("\x9b"
                    "31m") == "\\x9b31m");  // a lone 8-bit CSI byte
}

TEST_CASE("utf8_error finds the first byte that begins no well-formed UTF-8 character") {
  constexpr auto none = std::string::npos;
  CHECK(utf8_error("") == none);
  CHECK(utf8_error("plain ascii") == none);
  CHECK(utf8_error("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x94\x91 \xf4\x8f\xbf\xbf") == none);
  CHECK(utf8_error("caf\xe9") == 3);
  CHECK(utf8_error("ok\xc3") == 2);            // cut short
  CHECK(utf8_error("\xc0\xaf") == 0);          // overlong
  CHECK(utf8_error("ab\xed\xa0\x80") == 2);    // a surrogate
  CHECK(utf8_error("\xf4\x90\x80\x80") == 0);  // above U+10FFFF
  CHECK(utf8_error("\xe2\x82") == 0);          // a 3-byte character cut short
  CHECK(utf8_error("\x80") == 0);              // a lone continuation byte
}
