"""Helpers for the end-to-end tests of issue 5 (secrets: versions and stages, rotation hooks, exec,
maintain, the PostgreSQL rotator).

They build on tests/e2e_keys/keyenv.py (a fresh vault and private SoftHSM2 token per test class,
kmsctl run as a user runs it, audit records read straight from the vault file) and add what
secrets need: values piped on stdin, hook scripts written into the test's directory, and a scan
of the vault, its WAL and journal for plaintext.
"""

import os
import stat
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e_keys"))

import keyenv  # noqa: E402
from keyenv import (FAILED, INTEGRITY, NOT_FOUND, OK, REFUSED, UNAVAILABLE, USAGE,  # noqa: E402,F401
                    KeysTestCase, days, ts)

SOURCE_DIR = keyenv.SOURCE_DIR
KMSCTL = keyenv.KMSCTL


# Reads the vault's audit log with sqlite3, read-only, as any other program could while kmsctl
# waits for the hook: the secret.rotate records of this secret so far, one `seq|step|outcome`
# line each, into ./seen.STEP. Fails at the step named in ./order-fail; at the step named in
# ./order-kill it kills kmsctl (its parent's parent) with SIGKILL.
ORDER_HOOK = r"""#!/bin/sh
dir=$(dirname "$0")
sqlite3 -readonly -cmd '.timeout 10000' "$KMSCTL_VAULT" \
  "SELECT seq, json_extract(params, '\$.step'), outcome FROM audit_log
   WHERE action = 'secret.rotate' AND resource = 'secret/$KMSCTL_SECRET_NAME' ORDER BY seq" \
  > "$dir/seen.$KMSCTL_ROTATION_STEP" || exit 1
if [ "$(cat "$dir/order-kill" 2>/dev/null)" = "$KMSCTL_ROTATION_STEP" ]; then
  p=$PPID  # /bin/sh -c, then kmsctl
  while [ "$(cat "/proc/$p/comm")" != kmsctl ]; do
    p=$(sed 's/.*) //' "/proc/$p/stat" | cut -d' ' -f2)
    [ "$p" -gt 1 ] || { echo "hook: kmsctl is not an ancestor" >&2; exit 1; }
  done
  kill -KILL "$p"
  exit 0
fi
[ "$(cat "$dir/order-fail" 2>/dev/null)" = "$KMSCTL_ROTATION_STEP" ] && exit 4
exit 0
"""


def read_seen(vault, step):
    """The (seq, step, outcome) records the order hook saw at `step`."""
    with open(vault.path(f"seen.{step}")) as f:
        return [(int(s), st, o) for s, st, o in (l.split("|") for l in f.read().splitlines())]


class SecretsTestCase(KeysTestCase):
    """One fresh vault per test class, plus helpers for secrets."""

    def create(self, name, value, *args):
        self.vault.ok("secret", "create", name, "--value-stdin", *args, input=value)

    def put(self, name, value, *args):
        self.vault.ok("secret", "put", name, "--value-stdin", *args, input=value)

    def get(self, name, *args, **kw):
        return self.vault.ok("secret", "get", name, *args, **kw).raw

    def describe(self, name, **kw):
        return self.vault.json("secret", "describe", name, "--json", **kw)

    def stages(self, name, **kw):
        return self.describe(name, **kw)["stages"]

    def write_script(self, name, text):
        """An executable script in the vault's directory; returns its path."""
        path = self.vault.path(name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, stat.S_IRWXU)
        return path

    def assertNotStored(self, *values):
        """None of the byte strings appears in the vault file, its WAL or its journal."""
        for suffix in ("", "-wal", "-journal", "-shm"):
            path = self.vault.vault + suffix
            if not os.path.exists(path):
                continue
            with open(path, "rb") as f:
                data = f.read()
            for v in values:
                self.assertNotIn(v, data, f"a secret value is stored in plaintext in {path}")


def main():
    keyenv.main()
