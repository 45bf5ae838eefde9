#!/bin/sh
# Fails, naming the header, unless every public header in include/kms/ compiles on its own with
# only include/ on the include path (so it includes no internal header of src/), and none of them
# names SQLite, PKCS#11 or nlohmann-json types: those are internal (docs/ARCHITECTURE.md §2).
# Run by ctest as `public_headers`. CXX: the compiler (default c++).
set -eu
cd "$(dirname "$0")/.."
cxx=${CXX:-c++}
bad=0
for h in include/kms/*.hpp; do
  name=${h#include/}
  if ! printf '#include "%s"\n' "$name" |
    "$cxx" -std=c++20 -fsyntax-only -Wall -Wextra -Werror -Iinclude -x c++ - 2>/tmp/kms-hdr.$$; then
    echo "public-headers: $name does not compile with include/ alone:" >&2
    head -5 /tmp/kms-hdr.$$ >&2
    bad=1
  fi
  if grep -nE 'sqlite3|nlohmann|(^|[^A-Z_])CK_[A-Z]|pkcs11|<p11-kit' "$h" >&2; then
    echo "public-headers: $name names an internal library's type (above)" >&2
    bad=1
  fi
done
rm -f /tmp/kms-hdr.$$
[ "$bad" = 0 ] || exit 1
echo "public-headers: $(ls include/kms/*.hpp | wc -l) headers stand alone"
