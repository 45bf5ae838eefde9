"""Helpers for the end-to-end tests of issue 3 (keys, versions, rotation, encrypt/decrypt, data
keys, maintain).

Each test class gets a fresh vault (KMSCTL_VAULT in its own temporary directory, the user PIN in a
0600 file named by KMSCTL_PIN_FILE, `kmsctl init --so-pin-file F` makes a private SoftHSM2 token
beside the vault). kmsctl runs as a user runs it: the built binary ($KMSCTL_BIN), stdin from
/dev/null unless a test pipes input, no controlling terminal, a minimal environment.

Audit records are counted by reading the vault's audit_log table directly (read only, no kmsctl
process, so counting adds no record); tests cross-check with `kmsctl audit list --json`.
"""

import base64
import datetime
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import tempfile
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("KMS_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
KMSCTL = os.environ.get("KMSCTL_BIN") or os.path.join(SOURCE_DIR, "build", "kmsctl")

SOFTHSM_MODULE = next(
    (p for p in ("/usr/lib/softhsm/libsofthsm2.so",
                 "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so") if os.path.exists(p)),
    "/usr/lib/softhsm/libsofthsm2.so")

PIN = "keys-e2e-Pin-9d3a61"

# Exit codes of docs/ARCHITECTURE.md §6.
OK, FAILED, USAGE, NOT_FOUND, REFUSED, INTEGRITY, UNAVAILABLE = 0, 1, 2, 3, 4, 5, 6

_PASS_THROUGH = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LD_LIBRARY_PATH")

# The blob of include/kms/blob.hpp: "KMSC" || u8 version || 16-byte key id || u32be key version ||
# 12-byte nonce || ciphertext || 16-byte tag.
MAGIC = b"KMSC"
HEADER = 4 + 1 + 16 + 4
NONCE = 12
TAG = 16
MIN_BLOB = HEADER + NONCE + TAG


def parse_blob(raw):
    """(magic, format version, key id text, key version, nonce, ciphertext||tag)."""
    if len(raw) < MIN_BLOB:
        raise ValueError(f"blob of {len(raw)} bytes is shorter than {MIN_BLOB}")
    magic, fmt_version = raw[:4], raw[4]
    key_id = str(uuid.UUID(bytes=bytes(raw[5:21])))
    (key_version,) = struct.unpack(">I", raw[21:25])
    return magic, fmt_version, key_id, key_version, raw[25:37], raw[37:]


# ---- times and ids ----
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def ts(text):
    """An RFC 3339 UTC time with milliseconds, as kmsctl writes it."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def days(n):
    return datetime.timedelta(days=n)


class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.raw, self.err = argv, rc, out, err.decode("utf-8", "replace")

    @property
    def out(self):
        return self.raw.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.raw)

    def __repr__(self):
        return (f"`kmsctl {' '.join(self.argv)}` exited {self.rc}\n--- stdout ---\n"
                f"{self.raw[:2000]!r}\n--- stderr ---\n{self.err}")


class Vault:
    """A temporary directory with a vault path and a PIN file."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="kmsctl-keys-e2e-")
        os.chmod(self.root, 0o700)
        self.home = self.path("home")
        os.mkdir(self.home, 0o700)
        self.vault = self.path("vault", "vault.db")
        self.token_conf = self.vault + ".token/softhsm2.conf"
        self.pin_file = self.path("pin")
        fd = os.open(self.pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PIN + "\n")

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self, faketime=None):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home, "LANG": "C.UTF-8",
             "TMPDIR": self.root, "KMSCTL_VAULT": self.vault, "KMSCTL_PIN_FILE": self.pin_file}
        for k in _PASS_THROUGH:
            if k in os.environ:
                e[k] = os.environ[k]
        if faketime:
            # libfaketime is LD_PRELOADed; an ASan build must not insist on coming first.
            opts = e.get("ASAN_OPTIONS", "")
            e["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "verify_asan_link_order=0"
        return e

    def argv(self, args, faketime=None):
        argv = [KMSCTL, *args]
        if faketime:
            argv = ["faketime", "-f", faketime, *argv]
        return argv

    def run(self, *args, input=None, faketime=None, timeout=300):
        """kmsctl ARGS; stdin /dev/null unless `input` (bytes or str) is piped."""
        if isinstance(input, str):
            input = input.encode()
        p = subprocess.run(self.argv(args, faketime), input=input,
                           stdin=subprocess.DEVNULL if input is None else None,
                           capture_output=True, env=self.env(faketime), timeout=timeout,
                           start_new_session=True, cwd=self.root)
        return Result(list(args), p.returncode, p.stdout, p.stderr)

    def popen(self, *args):
        return subprocess.Popen(self.argv(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env(), start_new_session=True,
                                cwd=self.root)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        if r.rc != 0:
            raise AssertionError("expected exit 0:\n" + repr(r))
        return r

    def json(self, *args, **kw):
        return self.ok(*args, **kw).json()

    def init(self):
        self.ok("init", "--so-pin-file", self.path("so-pin"))

    # ---- the vault file, read directly ----
    def sql(self, statement, params=()):
        con = sqlite3.connect(self.vault, isolation_level=None, timeout=30)
        try:
            return con.execute(statement, params).fetchall()
        finally:
            con.close()

    def audit_count(self):
        return self.sql("SELECT count(*) FROM audit_log")[0][0]

    def audit_rows(self, after_seq=0):
        rows = self.sql("SELECT seq, time, action, resource, params, outcome, error_code "
                        "FROM audit_log WHERE seq > ? ORDER BY seq", (after_seq,))
        return [{"seq": s, "time": t, "action": a, "resource": r, "params": json.loads(p),
                 "outcome": o, "error_code": c} for s, t, a, r, p, o, c in rows]

    def audit_list(self):
        """`kmsctl audit list --json`, oldest first (the listing adds its own record after)."""
        return list(reversed(self.json("audit", "list", "--json", "--limit", "1000000")))

    # ---- keys ----
    def create_key(self, *args):
        return self.ok("key", "create", *args).out.strip()

    def encrypt(self, key, data, *args):
        """The base64 blob text (without the newline)."""
        return self.ok("encrypt", "--key", key, *args, input=data).out.strip()

    def decrypt(self, blob, *args):
        return self.ok("decrypt", *args, input=blob).raw

    # ---- the token ----
    def token_secret_keys(self):
        """pkcs11-tool's listing of the token's secret keys, parsed into {label: attributes}."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home,
               "SOFTHSM2_CONF": self.token_conf}
        p = subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--login", "--pin", PIN,
                            "--list-objects", "--type", "secrkey"], stdin=subprocess.DEVNULL,
                           capture_output=True, env=env, timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"pkcs11-tool failed: {p.stderr.decode()}")
        objects, current = {}, None
        for line in p.stdout.decode().splitlines():
            if line.startswith("Secret Key Object"):
                current = {"header": line}
            elif current is not None and line.strip().startswith("label:"):
                objects[line.split(":", 1)[1].strip()] = current
            elif current is not None and ":" in line:
                k, v = line.split(":", 1)
                current[k.strip()] = v.strip()
        return objects, p.stdout.decode()


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text.strip(), validate=True)


class KeysTestCase(unittest.TestCase):
    """One fresh, initialised vault per test class (setUpClass); tests in a class share it and
    must not depend on each other's order."""

    maxDiff = None
    vault = None

    @classmethod
    def setUpClass(cls):
        cls.vault = Vault()
        try:
            cls.vault.init()
        except BaseException:
            cls.vault.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.vault.cleanup()

    # ---- assertions ----
    def assertError(self, r, code, *needles, hint=None):
        """Exit `code`, stderr `kmsctl: error: ...` then a `hint:` line, each needle in the error,
        `hint` (if given) in the hint line, nothing on stdout."""
        self.assertEqual(r.rc, code, f"expected exit {code}:\n{r!r}")
        self.assertTrue(r.err.startswith("kmsctl: error: "), f"no 'kmsctl: error: ':\n{r!r}")
        hints = [l for l in r.err.splitlines() if l.startswith("hint: ")]
        self.assertTrue(hints, f"no hint line:\n{r!r}")
        for n in needles:
            self.assertIn(n, r.err, f"stderr does not mention {n!r}:\n{r!r}")
        if hint is not None:
            self.assertIn(hint, hints[0], f"the hint does not mention {hint!r}:\n{r!r}")
        self.assertEqual(r.raw, b"", f"nothing belongs on stdout on failure:\n{r!r}")

    def audited(self, *args, action, rc=0, outcome=None, error_code=None, input=None,
                faketime=None):
        """Runs kmsctl ARGS, checks its exit code and that it wrote exactly one audit record with
        this action (and outcome); returns (result, record)."""
        before = self.vault.sql("SELECT coalesce(max(seq), 0) FROM audit_log")[0][0]
        r = self.vault.run(*args, input=input, faketime=faketime)
        self.assertEqual(r.rc, rc, f"expected exit {rc}:\n{r!r}")
        new = self.vault.audit_rows(before)
        self.assertEqual(len(new), 1, f"expected exactly one audit record, got {new}\n{r!r}")
        rec = new[0]
        self.assertEqual(rec["action"], action, rec)
        if outcome is None:
            outcome = {0: "ok", REFUSED: "denied"}.get(rc, "error")
        self.assertEqual(rec["outcome"], outcome, rec)
        if error_code is not None:
            self.assertEqual(rec["error_code"], error_code, rec)
        return r, rec

    def unaudited(self, *args, rc, input=None):
        """Runs kmsctl ARGS, expects exit `rc` and no audit record (a usage error caught before
        the vault is opened)."""
        before = self.vault.audit_count()
        r = self.vault.run(*args, input=input)
        self.assertEqual(r.rc, rc, f"expected exit {rc}:\n{r!r}")
        self.assertEqual(self.vault.audit_count(), before, f"a record was written:\n{r!r}")
        return r


def main():
    if not os.path.exists(KMSCTL):
        raise SystemExit(f"kmsctl binary not found at {KMSCTL}: build it, or set KMSCTL_BIN")
    unittest.main(verbosity=2)

