#!/bin/sh
# Fails, naming the files, unless every C++ source the repository tracks is laid out as
# .clang-format says. Fix with: git ls-files '*.cpp' '*.hpp' | xargs clang-format -i
# (or `git clang-format` for the lines of a change). Run by ctest as `format`.
set -eu
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "check-format: clang-format is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files '*.cpp' '*.hpp')
else
  files=$(find include src tests bench fuzz examples -name '*.cpp' -o -name '*.hpp')
fi
bad=""
for f in $files; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
  echo "check-format: not formatted as .clang-format says:" >&2
  for f in $bad; do echo "  $f" >&2; done
  echo "fix: clang-format -i$bad" >&2
  exit 1
fi
echo "check-format: $(echo "$files" | wc -w) files formatted"
