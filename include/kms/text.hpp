// Text that kmsctl takes from its user or a file and shows back on a terminal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kms {

// The offset of the first byte of `s` that is not part of a well-formed UTF-8 character (RFC
// 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or npos when there is none.
std::size_t utf8_error(std::string_view s) noexcept;

// `s` as it may be printed inside one line of text output: nothing in it can end the line,
// move the cursor, recolour the terminal or reorder what it shows. A backslash is doubled;
// newline, carriage return and tab become \n, \r and \t; other C0 controls and DEL become \xNN;
// C1 controls, the line and paragraph separators and the bidirectional controls become \uNNNN;
// a byte that is not part of well-formed UTF-8 becomes \xNN. All other text is unchanged, so
// the escaping is reversible and plain text reads as it was given.
std::string escape_text(std::string_view s);

}  // namespace kms
