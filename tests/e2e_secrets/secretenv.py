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
