#!/usr/bin/env bash
# The long torture run: KILLS kills (default 1000) by SIGKILL, SIGTERM and SIGINT at random
# instants of a random mix of kmsctl commands, each followed by checks that the vault opens,
# its audit log verifies, the SQLite file is intact and the command happened entirely or not at
# all (tests/e2e/torture.py says exactly what is checked). The suite runs a short one
# (tests/e2e/robustness/test_torture.py). Record the last result in docs/SECURITY.md.
#
# Usage: scripts/torture.sh [KILLS [SEED]]     (builds build/kmsctl first if needed; KMSCTL_BIN
# names another binary)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x build/kmsctl ]] || scripts/setup.sh
echo "torture: kmsctl $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
start=$SECONDS
set +e
KMSCTL_BIN=${KMSCTL_BIN:-$PWD/build/kmsctl} python3 tests/e2e/torture.py "${1:-1000}" ${2:+"$2"}
rc=$?
set -e
echo "torture: $((SECONDS - start)) s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
