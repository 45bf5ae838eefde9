"""The one harness of kmsctl's end-to-end tests (tests/e2e/FEATURE/test_*.py).

A KmsEnv is a temporary directory with its own vault path (KMSCTL_VAULT), its own PIN (in a 0600
file named by KMSCTL_PIN_FILE; a PIN is never put on kmsctl's argv), and, once `kmsctl init` ran,
its own private SoftHSM2 token beside the vault. kmsctl runs exactly as a user would run it: the
built binary, stdin from /dev/null (or bytes a test pipes in), no controlling terminal, a minimal
environment. Each run returns a Result (exit code, stdout as text and bytes, stderr). A run can be
given its own clock (`faketime="-40d"`): libfaketime is preloaded into that one process.

Test cases: KmsTestCase gives every test a fresh, uninitialised KmsEnv (`self.kms`);
SharedVaultTestCase gives a test class one initialised KmsEnv (`self.vault`) and counts audit
records by reading the vault's audit_log table directly (read only, so counting adds no record);
FilesTestCase and SecretsTestCase add what the file envelope and secrets need.

With KMS_TEST_STORE=postgresql the same tests run on a vault in PostgreSQL instead of a file:
each KmsEnv gets a database of its own in one throwaway cluster per test process, and a SoftHSM2
token of its own exported by `p11-kit server` (an "HSM host") that kmsctl reaches through
`p11-kit-client.so`, as hosts sharing a vault do. `sql()` then runs on the database (psql, as its
administrator), and what only a vault file has (its bytes, its WAL, a copy of it) skips the test
that asks for it (`file_store_only`).

The binary comes from KMSCTL_BIN (set by CTest to $<TARGET_FILE:kmsctl>); the source tree from
KMS_SOURCE_DIR. A test imports this module after putting tests/e2e on sys.path (the first lines
of every test), so that `python3 tests/e2e/keys/test_crypto.py` runs by hand as under CTest.
"""

import atexit
import base64
import datetime
import glob
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import stat
import struct
import subprocess
import tempfile
import time
import types
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("KMS_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
KMSCTL = os.environ.get("KMSCTL_BIN") or os.path.join(SOURCE_DIR, "build", "kmsctl")
# A kmsctl built with sanitizers (tests/CMakeLists.txt sets this to the compiler's CMake id, GNU
# or Clang; 0 otherwise): each run is several times slower, so a test that runs kmsctl thousands
# of times may check less often between runs.
SANITIZED_BY = os.environ.get("KMSCTL_TEST_SANITIZED", "0")
SANITIZED = SANITIZED_BY not in ("", "0")

SOFTHSM_MODULE = next(
    (p for p in ("/usr/lib/softhsm/libsofthsm2.so",
                 "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/local/lib/softhsm/libsofthsm2.so") if os.path.exists(p)),
    "/usr/lib/softhsm/libsofthsm2.so")

# p11-kit's client module: a token that `p11-kit server` exports on a socket (HsmHost).
CLIENT_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"

# Where the vault lives: "file" (the default) or "postgresql" (KMS_TEST_STORE, see above).
STORE = os.environ.get("KMS_TEST_STORE") or "file"
if STORE not in ("file", "postgresql"):
    raise SystemExit(f"KMS_TEST_STORE={STORE}: expected file or postgresql")
ON_POSTGRES = STORE == "postgresql"
# How a vault in PostgreSQL reaches its token: "p11-kit" (the default: `p11-kit server` and
# p11-kit-client.so, as hosts sharing a vault do) or "softhsm" (SoftHSM2's module itself, for
# the tests of mechanisms that Debian 12's p11-kit cannot forward: AES-GCM, EdDSA).
TOKEN = os.environ.get("KMS_TEST_TOKEN") or "p11-kit"


def file_store_only(reason):
    """Skips a test (or a test class) on a vault in PostgreSQL: `reason` says what it needs
    that only a vault file has."""
    return unittest.skipIf(ON_POSTGRES, f"a vault file only: {reason}")


def skip_on_postgres(reason):
    """Skips the running test on a vault in PostgreSQL (from inside a helper)."""
    if ON_POSTGRES:
        raise unittest.SkipTest(f"a vault file only: {reason}")


# libfaketime (Debian package faketime), preloaded into a kmsctl run that needs another clock.
LIBFAKETIME = next(
    (p for p in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/faketime/libfaketime.so.1",
                 "/usr/local/lib/faketime/libfaketime.so.1") if os.path.exists(p)),
    None)

# This machine's name: every audit record names the caller's host (params.host).
HOST = socket.gethostname()

# Distinctive values, so that a search for them on disk or in output cannot match by accident.
DEFAULT_PIN = "e2e-Pin-5c81f0d7"

# Exit codes of docs/ARCHITECTURE.md §6.
OK, FAILED, USAGE, NOT_FOUND, REFUSED, INTEGRITY, UNAVAILABLE = 0, 1, 2, 3, 4, 5, 6

AUDIT_FIELDS = ("seq", "time", "principal", "uid", "action", "resource", "params", "outcome",
                "error_code", "prev_hash", "hash", "mac")
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# Environment variables passed through to kmsctl (sanitizer settings for the ASan build).
_PASS_THROUGH = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS", "TSAN_OPTIONS",
                 "LD_LIBRARY_PATH")


class Result:
    """What one kmsctl run did: its exit code, stdout as text (`out`, decoded when first read) and
    as bytes (`raw`), stderr as text, and the arguments it ran with."""

    def __init__(self, rc, out, err, raw=None, argv=()):
        self.rc, self.err, self.argv = rc, err, list(argv)
        self._out = out
        self.raw = out.encode() if raw is None else raw

    @classmethod
    def of(cls, argv, rc, out, err):
        """The Result of a run with these arguments, exit code and output bytes."""
        return cls(rc, None, err.decode("utf-8", "replace"), raw=out, argv=argv)

    @property
    def out(self):
        if self._out is None:
            self._out = self.raw.decode("utf-8", "replace")
        return self._out

    def json(self):
        return json.loads(self.raw)

    def show(self, argv=None):
        argv = argv or self.argv
        return (f"{'kmsctl ' + ' '.join(argv) if argv else 'command'} exited {self.rc}\n"
                f"--- stdout ---\n{self.out}--- stderr ---\n{self.err}")

    __repr__ = show


def faketime_env(offset):
    """What one kmsctl run needs in its environment to see its clock moved by `offset`
    (libfaketime's FAKETIME syntax: "-40d", "+8d"). Only the wall clock moves: lock waits and
    retries keep the real monotonic clock. An ASan build must not insist on being first in the
    library list, which a preloaded library would break. Skips the calling test when libfaketime
    is not installed."""
    if LIBFAKETIME is None:
        raise unittest.SkipTest("libfaketime is not installed (Debian package faketime)")
    if SANITIZED_BY == "Clang":
        # clang's ASan calls clock_gettime while it starts, before libfaketime is ready, and the
        # process hangs there (even `kmsctl --version`). The release build runs these tests.
        raise unittest.SkipTest("libfaketime hangs a clang-sanitized kmsctl at start")
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
        self.binary = None    # the kmsctl to run instead of KMSCTL (UnixUsers.share_kmsctl)
        self.env_overrides = {}  # set in every run's environment, after the rest
        self.so_pin = None    # set by init() when kmsctl printed a new token's SO PIN
        self.db = None        # on PostgreSQL: this vault's database and token (PostgresVault)
        if ON_POSTGRES:
            try:
                self.db = PostgresVault(self)
            except BaseException:
                self.cleanup()
                raise
            os.mkdir(self.vault_dir, 0o700)
            self.vault = self.db.location
            self.token_dir, self.token_conf = self.db.hsm.dir, self.db.hsm.conf

    @property
    def shown_vault(self):
        """The vault as kmsctl names it in its output: the file's path, or the database's
        connection string as a URI without password."""
        return self.db.shown if self.db else self.vault

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
        if self.db:
            self.db.remove()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- running kmsctl ----
    def base_env(self, faketime=None):
        """kmsctl's whole environment; with `faketime`, its clock is moved (faketime_env)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            # Where kmsctl looks for its config file (profiles) and trusted-modules: this
            # environment's, never the developer's own ~/.config/kmsctl/config.toml.
            "XDG_CONFIG_HOME": os.path.join(self.home, ".config"),
            "LANG": "C.UTF-8",
            "TMPDIR": self.root,
            "KMSCTL_VAULT": self.vault,
            "KMSCTL_PIN_FILE": self.pin_file,
        }
        for k in _PASS_THROUGH:
            if k in os.environ:
                env[k] = os.environ[k]
        env.update(self.env_overrides)
        if faketime:
            env.update(faketime_env(faketime))
        return env

    def run(self, *args, env=None, unset=(), timeout=300, preexec_fn=None, cwd=None, binary=None,
            input=None, faketime=None):
        """Runs kmsctl ARGS with stdin=/dev/null (or the bytes `input`) and no controlling
        terminal; with `faketime` (e.g. "-40d"), its clock is moved by that much
        (faketime_env). `input` may be text."""
        e = self.base_env(faketime)
        for k in unset:
            e.pop(k, None)
        if env:
            e.update(env)
        argv = [binary or self.binary or KMSCTL, *args]
        if isinstance(input, str):
            input = input.encode()
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        p = subprocess.run(argv, capture_output=True, env=e, timeout=timeout,
                           preexec_fn=preexec_fn, start_new_session=True, cwd=cwd or self.root,
                           **stdin)
        r = Result.of(list(args), p.returncode, p.stdout, p.stderr)
        self.transcript.append((list(args), r))
        return r

    def popen(self, *args, env=None):
        """Starts kmsctl ARGS in the background (same environment as run())."""
        e = self.base_env()
        if env:
            e.update(env)
        return subprocess.Popen([self.binary or KMSCTL, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                                start_new_session=True, cwd=self.root)

    def ok(self, *args, **kw):
        """Runs kmsctl and fails the test unless it exits 0."""
        r = self.run(*args, **kw)
        if r.rc != 0:
            raise AssertionError("expected success:\n" + r.show(args))
        return r

    def json(self, *args, **kw):
        return self.ok(*args, **kw).json()

    def init(self, *args, **kw):
        if self.db:
            args = self.db.init_args(args)
        r = self.ok("init", *args, **kw)
        if self.db:
            self.so_pin = HsmHost.SO_PIN
            return r
        m = re.search(r"shown only this once:\s*\n\s*\n\s+(\S+)\s*\n", r.err)
        if m:
            self.so_pin = m.group(1)
        return r

    def status(self):
        return self.json("status", "--json")

    def records(self, **kw):
        """The whole audit log, oldest first (the listing appends its own record afterwards)."""
        rows = self.json("audit", "list", "--output", "json", "--limit", "1000000", **kw)["items"]
        return list(reversed(rows))

    # ---- the vault file, as an attacker with write access sees it ----
    def sql(self, statement, params=(), db=None):
        """Runs SQL on the vault file directly (no token); returns all rows. On PostgreSQL, on
        the vault's database as its administrator (PostgresVault.sql)."""
        if self.db and db is None:
            return self.db.sql(statement, params)
        con = sqlite3.connect(db or self.vault, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            return con.execute(statement, params).fetchall()
        finally:
            con.close()

    def audit_count(self):
        return self.sql("SELECT count(*) FROM audit_log")[0][0]

    def audit_rows(self, after_seq=0):
        """The audit records after `after_seq`, read from the vault file (adds no record)."""
        rows = self.sql("SELECT seq, time, action, resource, params, outcome, error_code "
                        "FROM audit_log WHERE seq > ? ORDER BY seq", (after_seq,))
        return [{"seq": s, "time": t, "action": a, "resource": r, "params": json.loads(p),
                 "outcome": o, "error_code": c} for s, t, a, r, p, o, c in rows]

    def checkpoint(self, db=None):
        """Folds the vault's WAL into the file and removes it, as SQLite's last close would.

        kmsctl leaves the WAL beside the vault between commands (no checkpoint on close), so a
        test that copies, truncates or overwrites the file itself must do this first."""
        if db is None:
            skip_on_postgres("the test copies, truncates or rewrites the file itself")
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
        if self.db and db is None:
            return self.db.script(script)
        con = sqlite3.connect(db or self.vault, isolation_level=None)
        try:
            con.executescript(script)
        finally:
            con.close()

    def vault_bytes(self):
        skip_on_postgres("the test reads the file's bytes")
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

    def token_secret_keys(self):
        """secret_keys() parsed into {label: attributes}, and the listing itself."""
        text = self.secret_keys()
        objects, current = {}, None
        for line in text.splitlines():
            if line.startswith("Secret Key Object"):
                current = {"header": line}
            elif current is not None and line.strip().startswith("label:"):
                objects[line.split(":", 1)[1].strip()] = current
            elif current is not None and ":" in line:
                k, v = line.split(":", 1)
                current[k.strip()] = v.strip()
        return objects, text

    # ---- keys ----
    def create_key(self, *args):
        return self.ok("key", "create", *args).out.strip()

    def encrypt(self, key, data, *args):
        """The base64 blob text (without the newline)."""
        return self.ok("encrypt", "--key", key, *args, input=data).out.strip()

    def decrypt(self, blob, *args):
        return self.ok("decrypt", *args, input=blob).raw


class KmsCase(unittest.TestCase):
    """The assertions every end-to-end test shares."""

    maxDiff = None

    def assertError(self, r, code, *needles, hint=None, stdout_empty=True):
        """Exit code `code`, `kmsctl: error: ...` then a `hint:` line on stderr, each needle in
        stderr, `hint` (if given) in the first hint line, and (by default) nothing on stdout."""
        self.assertEqual(r.rc, code, f"expected exit {code}:\n{r.show()}")
        self.assertTrue(r.err.startswith("kmsctl: error: "),
                        f"stderr must start with 'kmsctl: error: ':\n{r.show()}")
        self.assertRegex(r.err, r"(?m)^hint: \S", f"no hint line:\n{r.show()}")
        for n in needles:
            self.assertIn(n, r.err, f"stderr does not mention {n!r}:\n{r.show()}")
        if hint is not None:
            first = next(l for l in r.err.splitlines() if l.startswith("hint: "))
            self.assertIn(hint, first, f"the hint does not mention {hint!r}:\n{r.show()}")
        if stdout_empty:
            self.assertEqual(r.raw, b"", f"nothing belongs on stdout on failure:\n{r.show()}")

    def assertOk(self, r):
        self.assertEqual(r.rc, 0, r.show())


class KmsTestCase(KmsCase):
    """A test with a fresh KmsEnv (and, after `self.kms.init()`, a fresh token)."""

    def setUp(self):
        self.kms = KmsEnv()
        self.addCleanup(self.kms.cleanup)

    def populate(self, statuses):
        """init plus `statuses` status commands: a log of 1 + statuses records."""
        self.kms.init()
        for _ in range(statuses):
            self.kms.ok("status")


class AgentTestCase(KmsTestCase):
    """A KmsTestCase whose test may start a `kmsctl agent` (its pid in self.agent_pid): the agent
    is stopped after the test, with SIGTERM, then SIGKILL if it is still there after 5 s."""

    def setUp(self):
        super().setUp()
        self.agent_pid = None
        self.addCleanup(self.stop_agent)

    def stop_agent(self):
        if self.agent_pid is None:
            return
        try:
            os.kill(self.agent_pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(self.agent_pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        try:
            os.kill(self.agent_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class SharedVaultTestCase(KmsCase):
    """One fresh, initialised vault per test class (setUpClass), `self.vault`; tests in a class
    share it and must not depend on each other's order."""

    vault = None

    @classmethod
    def setUpClass(cls):
        cls.vault = KmsEnv()
        try:
            cls.vault.init("--so-pin-file", cls.vault.path("so-pin"))
        except BaseException:
            cls.vault.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.vault.cleanup()

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


def file_mode(path):
    return os.stat(path).st_mode & 0o7777


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text.strip(), validate=True)


# ---- times ----
def ts(text):
    """An RFC 3339 UTC time with milliseconds, as kmsctl writes it."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def days(n):
    return datetime.timedelta(days=n)


# ---- keys: the ciphertext blob ----
# The blob of src/keys/blob.hpp: "KMSC" || u8 version || 16-byte key id || u32be key version ||
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


# ---- files: the envelope ----
class Envelope:
    """The parsed header of a file envelope and the offsets of its fields (docs/FORMAT.md §11.3),
    read from the spec, to cut and alter files at exact offsets."""

    def __init__(self, data):
        self.data = data
        assert data[:4] == b"KENC", data[:8]
        self.version, self.suite = data[4], data[5]
        (self.frame_size,) = struct.unpack(">I", data[6:10])
        self.salt = data[10:42]
        (ctx_len,) = struct.unpack(">I", data[42:46])
        self.ctx_off = 46
        off = 46 + ctx_len
        (n,) = struct.unpack(">H", data[off:off + 2])
        self.count_off = off
        off += 2
        self.recipients = []  # (offset of type, type, body offset, body)
        for _ in range(n):
            rtype = data[off]
            (blen,) = struct.unpack(">I", data[off + 1:off + 5])
            self.recipients.append((off, rtype, off + 5, data[off + 5:off + 5 + blen]))
            off += 5 + blen
        self.commit_off = off
        self.tag_off = off + 32
        self.header_len = off + 64
        self.body = data[self.header_len:]

    def keys(self):
        """[(key id, version)] named by the vault-key recipients' blobs."""
        out = []
        for _, rtype, _, body in self.recipients:
            if rtype == 1:
                out.append((str(uuid.UUID(bytes=bytes(body[5:21]))),
                            struct.unpack(">I", body[21:25])[0]))
        return out

    def frames(self):
        full = self.frame_size + TAG
        return [self.body[i:i + full] for i in range(0, len(self.body), full)]

    @property
    def header(self):
        return self.data[:self.header_len]


class FilesTestCase(SharedVaultTestCase):
    """A shared vault, plus a working directory per test class for input and output files."""

    def dir(self, name):
        d = self.vault.path(name)
        os.makedirs(d, exist_ok=True)
        return d

    def file_audited(self, *args, action, rc=0, error_code=None, input=None):
        """Runs a `file encrypt` or `file decrypt` of one input, checks its exit code and that it
        wrote exactly its two records (docs/FORMAT.md §8.1): the key use, outcome `started`
        (step start), then the end naming it (started_seq): `ok` with step done after a success,
        else `error` (`denied` for exit 4) with step end. Returns (result, start, end)."""
        before = self.vault.sql("SELECT coalesce(max(seq), 0) FROM audit_log")[0][0]
        r = self.vault.run(*args, input=input)
        self.assertEqual(r.rc, rc, f"expected exit {rc}:\n{r!r}")
        new = self.vault.audit_rows(before)
        self.assertEqual([x["action"] for x in new], [action, action], new)
        start, end = new
        self.assertEqual((start["outcome"], start["error_code"], start["params"]["step"]),
                         ("started", "", "start"), start)
        self.assertEqual(end["resource"], start["resource"], end)
        self.assertEqual(end["params"]["file"], start["params"]["file"], end)
        self.assertEqual(end["params"]["started_seq"], start["seq"], end)
        if rc == 0:
            self.assertEqual((end["outcome"], end["error_code"], end["params"]["step"]),
                             ("ok", "", "done"), end)
        else:
            self.assertEqual(end["outcome"], "denied" if rc == REFUSED else "error", end)
            self.assertEqual(end["params"]["step"], "end", end)
            if error_code is not None:
                self.assertEqual(end["error_code"], error_code, end)
        return r, start, end

    def assertNoOutput(self, directory, *names):
        """None of `names` exists in `directory`, and no temporary file was left there."""
        for n in names:
            self.assertFalse(os.path.exists(os.path.join(directory, n)), f"{n} was left behind")
        leftovers = [p for p in glob.glob(os.path.join(directory, ".*")) if ".tmp-" in p]
        self.assertEqual(leftovers, [], "temporary files were left behind")


# ---- secrets ----
# Reads the vault's audit log with sqlite3, read-only (psql for a vault in PostgreSQL), as any
# other program could while kmsctl waits for the hook: the secret.rotate records of this secret
# so far, one `seq|step|outcome` line each, into ./seen.STEP. Fails at the step named in
# ./order-fail; at the step named in ./order-kill it kills kmsctl (its parent's parent) with
# SIGKILL.
ORDER_HOOK = r"""#!/bin/sh
dir=$(dirname "$0")
query="SELECT seq, json_extract(params, '\$.step'), outcome FROM audit_log
   WHERE action = 'secret.rotate' AND resource = 'secret/$KMSCTL_SECRET_NAME' ORDER BY seq"
case "$KMSCTL_VAULT" in
  /*) sqlite3 -readonly -cmd '.timeout 10000' "$KMSCTL_VAULT" "$query" ;;
  *) psql -X -q -A -t -d "$KMSCTL_VAULT" -c "$query" ;;
esac > "$dir/seen.$KMSCTL_ROTATION_STEP" || exit 1
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


class SecretsTestCase(SharedVaultTestCase):
    """A shared vault, plus helpers for secrets: values piped on stdin, hook scripts written into
    the vault's directory, and a scan of the vault, its WAL and journal for plaintext."""

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
        """None of the byte strings appears in the vault file, its WAL or its journal (on
        PostgreSQL: in a pg_dump of the vault's database)."""
        if self.vault.db:
            data = self.vault.db.dump()
            for v in values:
                self.assertNotIn(v, data, "a secret value is stored in plaintext in the database")
            return
        for suffix in ("", "-wal", "-journal", "-shm"):
            path = self.vault.vault + suffix
            if not os.path.exists(path):
                continue
            with open(path, "rb") as f:
                data = f.read()
            for v in values:
                self.assertNotIn(v, data, f"a secret value is stored in plaintext in {path}")


class UnixUsers:
    """Unix users and groups a test creates (as root) and removes, each named with a random
    prefix so that a test never touches an account it did not make. `as_user(name)` is a
    preexec_fn that runs a child as that user, with the groups the user is a member of."""

    def __init__(self):
        self.prefix = "kt" + uuid.uuid4().hex[:6]
        self.users, self.groups = [], []

    def group(self, role):
        name = f"{self.prefix}-{role}"
        subprocess.run(["groupadd", name], check=True, capture_output=True)
        self.groups.append(name)
        return name

    def user(self, role, groups=()):
        """A system user without a home or a login shell, in `groups` (names from group())."""
        name = f"{self.prefix}-{role}"
        argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                "--user-group"]
        if groups:
            argv += ["--groups", ",".join(groups)]
        subprocess.run(argv + [name], check=True, capture_output=True)
        self.users.append(name)
        return name

    @staticmethod
    def ids(name):
        """(uid, gid, [every gid the user is in])"""
        import grp
        import pwd
        pw = pwd.getpwnam(name)
        gids = [pw.pw_gid] + [g.gr_gid for g in grp.getgrall() if name in g.gr_mem]
        return pw.pw_uid, pw.pw_gid, gids

    @classmethod
    def as_user(cls, name):
        uid, gid, gids = cls.ids(name)

        def drop():
            os.setgroups(gids)
            os.setgid(gid)
            os.setuid(uid)
        return drop

    def remove(self):
        for name in self.users:
            subprocess.run(["userdel", name], capture_output=True)
        for name in self.groups:
            subprocess.run(["groupdel", name], capture_output=True)

    @staticmethod
    def available():
        return os.geteuid() == 0 and shutil.which("useradd") is not None

    @staticmethod
    def share_kmsctl(directory):
        """kmsctl copied into `directory` (which other users can reach), with the sanitizer's
        suppressions file if LSAN_OPTIONS names one: the build tree may be in a directory only
        root can enter. Returns (the binary, the environment to run it with)."""
        binary = os.path.join(directory, "kmsctl")
        shutil.copy(KMSCTL, binary)
        os.chmod(binary, 0o755)
        env = {}
        lsan = os.environ.get("LSAN_OPTIONS", "")
        m = re.search(r"suppressions=([^:]+)", lsan)
        if m:
            supp = os.path.join(directory, "lsan.supp")
            shutil.copy(m.group(1), supp)
            os.chmod(supp, 0o644)
            env["LSAN_OPTIONS"] = lsan.replace(m.group(0), "suppressions=" + supp)
        return binary, env


def main():
    if not os.path.exists(KMSCTL):
        raise SystemExit(f"kmsctl binary not found at {KMSCTL}: build it, or set KMSCTL_BIN")
    unittest.main(verbosity=2)


def pg_bindir():
    """Debian's PostgreSQL server binaries (/usr/lib/postgresql/N/bin), the newest; or None."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


class PostgresCluster:
    """A throwaway PostgreSQL cluster: initdb in a new temporary directory, listening only on a
    unix socket there (no TCP). As root it belongs to the `postgres` user (initdb refuses root).
    `auth` is initdb's --auth; with a password, the superuser `admin` has it."""

    def __init__(self, auth="trust", admin_password=None, port="5433", options=""):
        self.bindir = pg_bindir()
        if self.bindir is None or shutil.which("psql") is None:
            raise unittest.SkipTest("PostgreSQL server binaries (Debian `postgresql`) or psql "
                                    "not installed; scripts/setup.sh installs them")
        import pwd
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        # As root the cluster's user must reach the directory: /tmp, not a private TMPDIR.
        self.root = tempfile.mkdtemp(prefix="kmsctl-pg-e2e-", dir="/tmp" if self.user else None)
        self.sock = os.path.join(self.root, "sock")
        self.data = os.path.join(self.root, "data")
        self.port = port
        self.options = options  # more server settings, as postgres's command line takes them
        self.admin_password = admin_password
        os.mkdir(self.sock, 0o700)
        args = ["initdb", "-D", self.data, "-U", "admin", f"--auth={auth}", "-E", "UTF8",
                "--no-instructions"]
        if admin_password:
            pwfile = os.path.join(self.root, "pwfile")
            with open(pwfile, "w") as f:
                f.write(admin_password + "\n")
            args.append(f"--pwfile={pwfile}")
        if self.user:
            for p in [self.root, self.sock] + ([pwfile] if admin_password else []):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)
        try:
            self.tool(*args)
            self.start()
        except BaseException:
            self.remove()
            raise

    def tool(self, tool, *args):
        kw = {}
        if self.user:
            kw = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        p = subprocess.run([os.path.join(self.bindir, tool), *args], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=120, cwd=self.root,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"},
                           **kw)
        if p.returncode != 0:
            raise AssertionError(f"{tool} failed: {p.stdout.decode()} {p.stderr.decode()}")

    def start(self):
        self.tool("pg_ctl", "-D", self.data, "-w", "-l", os.path.join(self.root, "log"), "-o",
                  f"-k {self.sock} -c listen_addresses= -p {self.port} {self.options}", "start")

    def stop(self, mode="fast"):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self.tool("pg_ctl", "-D", self.data, "-w", "-m", mode, "stop")

    def remove(self):
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def conninfo(self, dbname, user="admin"):
        """A libpq key=value connection string to `dbname` on the socket."""
        return f"host={self.sock} port={self.port} user={user} dbname={dbname}"

    def psql(self, sql, dbname="postgres", user="admin", password=None, args=()):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGCONNECT_TIMEOUT": "10"}
        if password or self.admin_password:
            env["PGPASSWORD"] = password or self.admin_password
        return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-h", self.sock, "-p", self.port,
                               "-U", user, "-d", dbname, "-v", "ON_ERROR_STOP=1", *args,
                               "-c", sql], capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=120, env=env, text=True)

    def admin_sql(self, sql, dbname="postgres"):
        p = self.psql(sql, dbname)
        if p.returncode != 0:
            raise AssertionError(f"psql as admin failed: {p.stderr}")
        return p.stdout

    def dump(self, dbname, path, fmt="c"):
        """pg_dump of `dbname` to `path`, in its custom format (compressed: for pg_restore) or,
        with fmt="p", as plain SQL (what a search for a value in the database reads)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if self.admin_password:
            env["PGPASSWORD"] = self.admin_password
        p = subprocess.run([os.path.join(self.bindir, "pg_dump"), "-h", self.sock, "-p",
                            self.port, "-U", "admin", f"-F{fmt}", "-f", path, dbname],
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=120, env=env)
        if p.returncode != 0:
            raise AssertionError(f"pg_dump failed: {p.stderr.decode()}")

    def restore(self, dbname, path):
        """Drops `dbname` and puts the dump at `path` in its place."""
        self.admin_sql(f"DROP DATABASE {dbname} WITH (FORCE)")
        self.admin_sql(f"CREATE DATABASE {dbname}")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if self.admin_password:
            env["PGPASSWORD"] = self.admin_password
        p = subprocess.run([os.path.join(self.bindir, "pg_restore"), "-h", self.sock, "-p",
                            self.port, "-U", "admin", "-d", dbname, path],
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=120, env=env)
        if p.returncode != 0:
            raise AssertionError(f"pg_restore failed: {p.stderr.decode()}")


class HsmHost:
    """A SoftHSM2 token in its own directory, exported by `p11-kit server` on a socket: the "HSM
    host" that alone has the token's files. kmsctl reaches it through CLIENT_MODULE with
    P11_KIT_SERVER_ADDRESS set to `address`."""

    SO_PIN = "e2e-SO-pin-3c7e"

    def __init__(self, root, pin, label="prod"):
        self.dir = os.path.join(root, "hsm-host")
        self.tokens = os.path.join(self.dir, "tokens")
        os.makedirs(self.tokens, 0o700)
        self.conf = os.path.join(self.dir, "softhsm2.conf")
        write(self.conf, f"directories.tokendir = {self.tokens}\nobjectstore.backend = file\n"
                         "log.level = ERROR\n".encode())
        self.label, self.pin = label, pin
        self.socket = os.path.join(self.dir, "pkcs11.sock")
        self.address = f"unix:path={self.socket}"
        self.server = None
        p = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                            "--so-pin", self.SO_PIN, "--pin", pin], env=self.env(),
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(p.stdout + p.stderr)

    def env(self):
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SOFTHSM2_CONF": self.conf}

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.server = subprocess.Popen(
            ["p11-kit", "server", "--foreground", "--name", self.socket, "--provider",
             SOFTHSM_MODULE, f"pkcs11:token={self.label}"],
            env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("p11-kit server did not start: " +
                                     self.server.stderr.read().decode("utf-8", "replace"))
            time.sleep(0.02)

    def stop(self):
        if self.server and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=30)
        if self.server:
            self.server.stderr.close()
        self.server = None

    def pkcs11_tool(self, *args):
        """pkcs11-tool on the HSM host itself (SoftHSM2's module, not the forwarder)."""
        p = subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.label,
                            *args], env=self.env(), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr


def _sql_literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"'\\x{bytes(v).hex()}'::bytea"
    return "'" + str(v).replace("'", "''") + "'"


def _inline(statement, params):
    """`statement` with each `?` outside a quoted string replaced by its parameter, as an SQL
    literal (psql takes no bind parameters; these are the tests' own values)."""
    params, out, quote = list(params), [], None
    for c in statement:
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "?":
            out.append(_sql_literal(params.pop(0)))
            continue
        out.append(c)
    if params:
        raise AssertionError(f"{len(params)} parameters left over for {statement!r}")
    return "".join(out)


_PG_INT = ("bigint", "integer", "smallint")
_PG_NULL = "\x01null\x01"


def _pg_value(text, typ):
    if text == _PG_NULL:
        return None
    if typ in _PG_INT:
        return int(text)
    if typ == "bytea":
        return bytes.fromhex(text[2:])
    if typ == "boolean":
        return 1 if text == "t" else 0
    if typ == "numeric":
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    if typ in ("double precision", "real"):
        return float(text)
    return text


class PostgresVault:
    """On KMS_TEST_STORE=postgresql: a KmsEnv's vault database in the test process's cluster
    (started by the first, fsync off, removed when the process exits), and its token on an
    HsmHost of its own that kmsctl reaches through p11-kit-client.so."""

    cluster = None
    count = 0

    def __init__(self, kms):
        if PostgresVault.cluster is None:
            PostgresVault.cluster = PostgresCluster(
                port="5434", options="-c fsync=off -c synchronous_commit=off "
                                     "-c full_page_writes=off -c max_connections=200")
            atexit.register(PostgresVault.cluster.remove)
        PostgresVault.count += 1
        self.name = f"vault{PostgresVault.count}"
        self.cluster.admin_sql(f"CREATE DATABASE {self.name}")
        self.location = self.cluster.conninfo(self.name)
        self.shown = (f"postgresql://admin@/{self.name}?host={self.cluster.sock}"
                      f"&port={self.cluster.port}")
        self.hsm = self.session = None
        self.hsm = HsmHost(kms.root, kms.pin)
        if TOKEN == "softhsm":
            self.module = SOFTHSM_MODULE
            kms.env_overrides["SOFTHSM2_CONF"] = self.hsm.conf
        else:
            self.module = CLIENT_MODULE
            self.hsm.start()
            kms.env_overrides["P11_KIT_SERVER_ADDRESS"] = self.hsm.address
        self.root = kms.root

    def init_args(self, args):
        """`kmsctl init`'s arguments for this database and token: the module and label added,
        and --so-pin-file FILE (for a token init makes) replaced by the token's SO PIN in FILE."""
        out, it = [], iter(args)
        for a in it:
            if a == "--so-pin-file":
                fd = os.open(next(it), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(HsmHost.SO_PIN + "\n")
            else:
                out.append(a)
        if "--pkcs11-module" not in out:
            out += ["--pkcs11-module", self.module, "--token-label", self.hsm.label]
        return out

    def psql(self, script):
        """Runs `script` with psql as the database's administrator: unaligned, no headers, fields
        ended by \\x1f, rows by \\x1e (the last by a newline), NULL as _PG_NULL. One psql session
        serves every call (a test reads rows thousands of times; a psql and a server backend
        started for each would be most of its time); psql exits at an error (ON_ERROR_STOP), so
        a failed script leaves no transaction open, and the next call starts another."""
        if self.session is None or self.session.poll() is not None:
            self.session_log = tempfile.TemporaryFile()
            self.session = subprocess.Popen(
                ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-R", "\x1e", "-P",
                 f"null={_PG_NULL}", "-h", self.cluster.sock, "-p", self.cluster.port, "-U", "admin",
                 "-d", self.name, "-v", "ON_ERROR_STOP=1", "-f", "-"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.session_log,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGCONNECT_TIMEOUT": "10"})
        mark = f"--kmsctl-e2e-done-{uuid.uuid4().hex}--\n".encode()
        out, deadline = b"", time.monotonic() + 120
        try:
            self.session.stdin.write(script.encode() + b"\n\\echo " + mark)
            self.session.stdin.flush()
            fd = self.session.stdout.fileno()
            while not out.endswith(mark):
                if not select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
                    self.session.kill()
                    raise AssertionError(f"psql gave no answer in 120 s\n{script}")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise BrokenPipeError
                out += chunk
        except BrokenPipeError:
            self.session.wait(timeout=30)
            self.session_log.seek(0)
            raise AssertionError("psql failed on the vault's database: "
                                 f"{self.session_log.read().decode(errors='replace')}\n{script}")
        return out[: -len(mark)].decode()

    def close_session(self):
        if self.session is not None:
            self.session.stdin.close()
            self.session.wait(timeout=30)
            self.session = None

    @staticmethod
    def _records(text):
        # No row prints nothing; rows end with a newline (one empty text column prints just it).
        if not text:
            return []
        return [r.split("\x1f") for r in text.removesuffix("\n").split("\x1e")]

    def sql(self, statement, params=()):
        """One statement as the database's administrator; its rows as tuples, typed as SQLite
        would type them (int, bytes, str, None): psql's \\gdesc gives the column types first."""
        return [tuple(r.values()) for r in self.sql_dicts(statement, params)]

    def sql_dicts(self, statement, params=()):
        """sql(), each row a dict by column name (in the columns' order)."""
        q = _inline(statement, params).strip().rstrip(";")
        mark = "--kmsctl-e2e-rows--"
        desc, rows = self.psql(f"{q} \\gdesc\n\\echo {mark}\n{q};\n").split(mark + "\n", 1)
        columns = [r for r in self._records(desc) if len(r) == 2]
        if not columns:
            return []
        return [{name: _pg_value(v, t) for v, (name, t) in zip(r, columns)}
                for r in self._records(rows)]

    def execute(self, statement, params=()):
        """An INSERT, UPDATE or DELETE as the database's administrator, committed at once; the
        number of rows it changed, as `.rowcount` (as sqlite3's cursor has it)."""
        q = _inline(statement, params).strip().rstrip(";")
        n = self.sql(f"WITH changed AS ({q} RETURNING 1) SELECT count(*) FROM changed")[0][0]
        return types.SimpleNamespace(rowcount=n)

    def script(self, script):
        self.psql(script)

    def transaction(self, statements, setup=()):
        """(statement, params) pairs in one transaction as the database's administrator,
        after the statements of `setup` (e.g. SET LOCAL ...)."""
        body = "".join(_inline(q, params) + ";\n" for q, params in statements)
        self.psql("BEGIN;\n" + "".join(q + ";\n" for q in setup) + body + "COMMIT;\n")

    def dump(self):
        """The whole database as plain SQL (pg_dump -Fp), as bytes."""
        path = os.path.join(self.root, "dump.sql")
        self.cluster.dump(self.name, path, fmt="p")
        try:
            return read(path)
        finally:
            os.unlink(path)

    def remove(self):
        if self.hsm:
            self.hsm.stop()
        try:
            self.close_session()
            self.cluster.admin_sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        except Exception:
            pass
