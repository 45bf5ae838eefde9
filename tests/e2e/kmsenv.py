"""Shared helpers for the kmsctl end-to-end tests.

Every test gets a fresh KmsEnv: its own temporary directory, its own vault path (KMSCTL_VAULT),
its own PIN (in a 0600 file named by KMSCTL_PIN_FILE; a PIN is never put on kmsctl's argv), and,
once the test runs `kmsctl init`, its own private SoftHSM2 token beside the vault. kmsctl runs
exactly as a user would run it: the built binary, stdin from /dev/null, no controlling terminal,
a minimal environment. Each run returns (rc, stdout, stderr). A run can be given its own clock
(`faketime="-40d"`): libfaketime is preloaded into that one process.

The binary comes from KMSCTL_BIN (set by CTest to $<TARGET_FILE:kmsctl>); the source tree from
KMS_SOURCE_DIR.
"""

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import unittest
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("KMS_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
KMSCTL = os.environ.get("KMSCTL_BIN") or os.path.join(SOURCE_DIR, "build", "kmsctl")

SOFTHSM_MODULE = next(
    (p for p in ("/usr/lib/softhsm/libsofthsm2.so",
                 "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/local/lib/softhsm/libsofthsm2.so") if os.path.exists(p)),
    "/usr/lib/softhsm/libsofthsm2.so")

# libfaketime (Debian package faketime), preloaded into a kmsctl run that needs another clock.
LIBFAKETIME = next(
    (p for p in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/faketime/libfaketime.so.1",
                 "/usr/local/lib/faketime/libfaketime.so.1") if os.path.exists(p)),
    None)

# Distinctive values, so that a search for them on disk or in output cannot match by accident.
DEFAULT_PIN = "e2e-Pin-5c81f0d7"

AUDIT_FIELDS = ("seq", "time", "principal", "uid", "action", "resource", "params", "outcome",
                "error_code", "prev_hash", "hash", "mac")
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# Environment variables passed through to kmsctl (sanitizer settings for the ASan build).
_PASS_THROUGH = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS", "TSAN_OPTIONS",
                 "LD_LIBRARY_PATH")


class Result(NamedTuple):
    rc: int
    out: str
    err: str

    def show(self, argv=None):
        return (f"{'kmsctl ' + ' '.join(argv) if argv else 'command'} exited {self.rc}\n"
                f"--- stdout ---\n{self.out}--- stderr ---\n{self.err}")


def faketime_env(offset):
    """What one kmsctl run needs in its environment to see its clock moved by `offset`
    (libfaketime's FAKETIME syntax: "-40d", "+8d"). Only the wall clock moves: lock waits and
    retries keep the real monotonic clock. An ASan build must not insist on being first in the
    library list, which a preloaded library would break. Skips the calling test when libfaketime
    is not installed."""
    if LIBFAKETIME is None:
        raise unittest.SkipTest("libfaketime is not installed (Debian package faketime)")
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "ASAN_OPTIONS": (opts + ":" if opts else "") + "verify_asan_link_order=0"}


class KmsEnv:
    """A temporary directory with a vault path and a PIN file; runs kmsctl in it."""

    def __init__(self, pin=DEFAULT_PIN):
        self.root = tempfile.mkdtemp(prefix="kmsctl-e2e-")
        os.chmod(self.root, 0o700)
        self.home = self.path("home")
        os.mkdir(self.home, 0o700)
        self.vault_dir = self.path("vault")
        self.vault = os.path.join(self.vault_dir, "vault.db")
        self.token_dir = self.vault + ".token"
        self.token_conf = os.path.join(self.token_dir, "softhsm2.conf")
        self.pin = pin
        self.pin_file = self.write_secret_file("pin", pin)
        self.transcript = []  # (argv, Result) of every run, for leak checks
        self.so_pin = None    # set by init() when kmsctl printed a new token's SO PIN

    # ---- files ----
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def write_secret_file(self, name, text):
        """A 0600 file whose first line is `text` (how a PIN is handed to kmsctl)."""
        p = self.path(name)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        return p

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- running kmsctl ----
    def base_env(self):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "TMPDIR": self.root,
            "KMSCTL_VAULT": self.vault,
            "KMSCTL_PIN_FILE": self.pin_file,
        }
        for k in _PASS_THROUGH:
            if k in os.environ:
                env[k] = os.environ[k]
        return env

    def run(self, *args, env=None, unset=(), timeout=300, preexec_fn=None, cwd=None, binary=None,
            input=None, faketime=None):
        """Runs kmsctl ARGS with stdin=/dev/null (or the bytes `input`) and no controlling
        terminal; with `faketime` (e.g. "-40d"), its clock is moved by that much
        (faketime_env)."""
        e = self.base_env()
        for k in unset:
            e.pop(k, None)
        if faketime:
            e.update(faketime_env(faketime))
        if env:
            e.update(env)
        argv = [binary or KMSCTL, *args]
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        p = subprocess.run(argv, capture_output=True, env=e, timeout=timeout,
                           preexec_fn=preexec_fn, start_new_session=True, cwd=cwd or self.root,
                           **stdin)
        r = Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                   p.stderr.decode("utf-8", "replace"))
        self.transcript.append((list(args), r))
        return r

    def popen(self, *args, env=None):
        """Starts kmsctl ARGS in the background (same environment as run())."""
        e = self.base_env()
        if env:
            e.update(env)
        return subprocess.Popen([KMSCTL, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                                start_new_session=True, cwd=self.root)

    def ok(self, *args, **kw):
        """Runs kmsctl and fails the test unless it exits 0."""
        r = self.run(*args, **kw)
        if r.rc != 0:
            raise AssertionError("expected success:\n" + r.show(args))
        return r

    def json(self, *args, **kw):
        return json.loads(self.ok(*args, **kw).out)

    def init(self, *args, **kw):
        r = self.ok("init", *args, **kw)
        m = re.search(r"shown only this once:\s*\n\s*\n\s+(\S+)\s*\n", r.err)
        if m:
            self.so_pin = m.group(1)
        return r

    def status(self):
        return self.json("status", "--json")

    def records(self, **kw):
        """The whole audit log, oldest first (the listing appends its own record afterwards)."""
        rows = self.json("audit", "list", "--json", "--limit", "1000000", **kw)
        return list(reversed(rows))

    # ---- the vault file, as an attacker with write access sees it ----
    def sql(self, statement, params=(), db=None):
        """Runs SQL on the vault file directly (no token); returns all rows."""
        con = sqlite3.connect(db or self.vault, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            cur = con.execute(statement, params)
            rows = cur.fetchall()
            return rows
        finally:
            con.close()

    def checkpoint(self, db=None):
        """Folds the vault's WAL into the file and removes it, as SQLite's last close would.

        kmsctl leaves the WAL beside the vault between commands (no checkpoint on close), so a
        test that copies, truncates or overwrites the file itself must do this first."""
        con = sqlite3.connect(db or self.vault, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0, "the WAL could not be checkpointed"
        finally:
            con.close()
        path = db or self.vault
        assert not os.path.exists(path + "-wal"), "the WAL is still there"

    def sql_script(self, script, db=None):
        con = sqlite3.connect(db or self.vault, isolation_level=None)
        try:
            con.executescript(script)
        finally:
            con.close()

    def vault_bytes(self):
        with open(self.vault, "rb") as f:
            return f.read()

    def vault_digest(self):
        return hashlib.sha256(self.vault_bytes()).hexdigest()

    # ---- the token, as pkcs11-tool sees it ----
    def pkcs11_tool(self, *args, conf=None):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home,
             "SOFTHSM2_CONF": conf or self.token_conf}
        p = subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, *args],
                           stdin=subprocess.DEVNULL, capture_output=True, env=e, timeout=120)
        return Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))

    def secret_keys(self, pin=None, conf=None):
        """pkcs11-tool's listing of the token's secret keys (logged in with the user PIN)."""
        r = self.pkcs11_tool("--login", "--pin", pin or self.pin, "--list-objects",
                             "--type", "secrkey", conf=conf)
        if r.rc != 0:
            raise AssertionError("pkcs11-tool failed:\n" + r.show())
        return r.out


class KmsTestCase(unittest.TestCase):
    """A test with a fresh KmsEnv (and, after `self.kms.init()`, a fresh token)."""

    maxDiff = None

    def setUp(self):
        self.kms = KmsEnv()
        self.addCleanup(self.kms.cleanup)

    def assertError(self, r, code, *needles, stdout_empty=True):
        """Exit code `code`, `kmsctl: error: ...` then a `hint:` line on stderr, each needle in
        stderr, and (by default) nothing on stdout."""
        self.assertEqual(r.rc, code, f"expected exit {code}:\n{r.show()}")
        self.assertTrue(r.err.startswith("kmsctl: error: "),
                        f"stderr must start with 'kmsctl: error: ':\n{r.show()}")
        self.assertRegex(r.err, r"(?m)^hint: \S", f"no hint line:\n{r.show()}")
        for n in needles:
            self.assertIn(n, r.err, f"stderr does not mention {n!r}:\n{r.show()}")
        if stdout_empty:
            self.assertEqual(r.out, "", f"nothing belongs on stdout on failure:\n{r.show()}")

    def assertOk(self, r):
        self.assertEqual(r.rc, 0, r.show())

    def populate(self, statuses):
        """init plus `statuses` status commands: a log of 1 + statuses records."""
        self.kms.init()
        for _ in range(statuses):
            self.kms.ok("status")


def file_mode(path):
    return os.stat(path).st_mode & 0o7777


def main():
    if not os.path.exists(KMSCTL):
        raise SystemExit(f"kmsctl binary not found at {KMSCTL}: build it, or set KMSCTL_BIN")
    unittest.main(verbosity=2)
