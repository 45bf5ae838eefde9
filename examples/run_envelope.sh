#!/bin/sh
# Runs examples/envelope.cpp (built as $1) on a fresh vault and token in a temporary directory:
# one envelope round trip of a 3 MiB random file through the public headers. Used by ctest.
set -eu
bin=$1
d=$(mktemp -d "${TMPDIR:-/tmp}/kms-example.XXXXXX")
trap 'rm -rf "$d"' EXIT
head -c 3145728 /dev/urandom >"$d/in.bin"
KMSCTL_PIN=example-pin-$$ "$bin" "$d/work" "$d/in.bin"
cmp "$d/in.bin" "$d/in.bin.out"
