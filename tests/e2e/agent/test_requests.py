"""The agent's requests (docs/FORMAT.md §13): what a client that speaks the wire format by hand,
a slow or broken one, or one of another uid gets from an agent, and what several kmsctl clients
at once, a file streamed through an agent, and a client killed in the middle of one leave in the
audit log and on disk.

A frame is u32be(length) ‖ payload. A request's payload is "KMAQ" ‖ u8(5) ‖ u16be(op) ‖
lp(vault path) ‖ its fields; a reply's is "KMAR" ‖ u8(2) ‖ u8(status): 0 ok (the response's
fields follow), 1 error (u8 exit code ‖ lp(message) ‖ lp(hint)), 2 local. lp(x) is
u32be(len) ‖ x; an optional field is u8(0), or u8(1) ‖ its value.

Every agent a test starts is stopped in its cleanup (SIGTERM, then SIGKILL), by its pid."""

import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KMSCTL, KmsTestCase, Result, read, write

NOBODY = 65534
IS_ROOT = os.geteuid() == 0
MIB = 1 << 20

WIRE_VERSION = 7  # docs/FORMAT.md §13.1
OP_SECRET_GET = 62
OP_FILE_WRAP = 50
OP_AGENT_STATUS = 0xF000
OP_AGENT_STOP = 0xF001
STATUS_OK, STATUS_ERROR = 0, 1
PIN_VARIABLES = ("KMSCTL_PIN", "KMSCTL_PIN_FILE", "KMSCTL_NEW_PIN", "KMSCTL_NEW_PIN_FILE")


# ---- the wire format, written by hand ----
def lp(data):
    return struct.pack(">I", len(data)) + data


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def request(op, vault, fields=b""):
    """A request frame: operation `op` for the vault at `vault`, with its encoded fields."""
    return frame(b"KMAQ" + bytes([WIRE_VERSION]) + struct.pack(">H", op) + lp(os.fsencode(vault)) + fields)


def secret_get_fields(name):
    """SecretGet: name, stage (none), version (none), exec (none)."""
    return lp(name.encode()) + b"\x00" + b"\x00" + b"\x00"


def recv_exactly(sock, n):
    """n bytes, or fewer when the peer closed first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_reply(sock):
    """The payload of the next frame, or None when the connection closed before one."""
    head = recv_exactly(sock, 4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    payload = recv_exactly(sock, size)
    if len(payload) < size:
        raise AssertionError(f"a reply cut short: {len(payload)} of {size} bytes")
    return payload


def parse_reply(payload):
    """{"status", and for an error "code", "message", "hint"}; fails on anything else."""
    if payload[:5] != b"KMAR" + bytes([WIRE_VERSION]) or len(payload) < 6:
        raise AssertionError(f"not a reply of wire version {WIRE_VERSION}: {payload[:16]!r}")
    reply = {"status": payload[5]}
    if reply["status"] == STATUS_ERROR:
        pos = 7
        reply["code"] = payload[6]
        texts = []
        for _ in range(2):
            (n,) = struct.unpack(">I", payload[pos:pos + 4])
            texts.append(payload[pos + 4:pos + 4 + n].decode("utf-8", "replace"))
            pos += 4 + n
        reply["message"], reply["hint"] = texts
        if pos != len(payload):
            raise AssertionError(f"bytes after the error reply's hint: {payload!r}")
    return reply


def closed_by_peer(sock):
    """Reads what is left on `sock` until the agent closes it: the bytes it sent first."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def is_running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class RequestsTestCase(KmsTestCase):
    """An initialised vault, and agents at a socket in a private directory of the test's."""

    def setUp(self):
        super().setUp()
        self.agent_pids = []
        self.addCleanup(self.stop_agents)  # runs before the temporary directory goes
        self.kms.init()
        self.sock_dir = self.kms.path("sock")
        os.mkdir(self.sock_dir, 0o700)
        self.sock = os.path.join(self.sock_dir, "agent.sock")

    # ---- agents ----
    def start_agent(self):
        r = self.kms.run("agent", "start", "--json", "--socket", self.sock)
        if r.rc != 0:
            raise AssertionError("agent start failed:\n" + r.show())
        info = json.loads(r.out)
        self.agent_pids.append(info["pid"])
        return info

    def stop_agents(self):
        for pid in self.agent_pids:
            if is_running(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(map(is_running, self.agent_pids)) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in self.agent_pids:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)

    def wait_for(self, predicate, timeout=30, what="the condition"):
        """A hang guard, not a measure: polls `predicate` until it is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        self.fail(f"{what} did not happen within {timeout}s")

    # ---- clients ----
    def client_env(self, sock=None, pin=False):
        e = self.kms.base_env()
        if not pin:
            for k in PIN_VARIABLES:
                e.pop(k, None)
        if sock:
            e["KMSCTL_AGENT_SOCK"] = sock
        return e

    def client(self, *args, input=None, timeout=120, cwd=None, pin=False, sock=True):
        """kmsctl ARGS through the agent (KMSCTL_AGENT_SOCK) and, unless pin, without any PIN:
        it can only succeed if the agent served it."""
        if isinstance(input, str):
            input = input.encode()
        p = subprocess.run([KMSCTL, *args], env=self.client_env(self.sock if sock else None, pin),
                           input=input, stdin=None if input is not None else subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, cwd=cwd or self.kms.root,
                           start_new_session=True)
        return Result.of(list(args), p.returncode, p.stdout, p.stderr)

    def served(self, *args, **kw):
        r = self.client(*args, **kw)
        if r.rc != 0:
            raise AssertionError("expected success through the agent:\n" + r.show())
        return r

    def connect(self, timeout=30):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(timeout)  # a hang guard
        s.connect(self.sock)
        return s

    # ---- the vault, read without the agent ----
    def make_secret(self, name, value):
        self.kms.ok("secret", "create", name, "--value-stdin", input=value)

    def head(self):
        return self.kms.sql("SELECT coalesce(max(seq), 0) FROM audit_log")[0][0]

    def verify_ok(self):
        r = self.kms.run("audit", "verify", "--json")
        self.assertEqual(r.rc, 0, r.show())
        self.assertIs(r.json()["ok"], True, r.out)

    def records_after(self, seq):
        """The audit records after `seq` as `audit list --json` shows them, oldest first."""
        return [x for x in self.kms.records() if x["seq"] > seq]


@unittest.skipUnless(IS_ROOT, "needs root to connect as another uid")
class AnotherUid(RequestsTestCase):
    def as_nobody(self, data, wait_close=False):
        """Sends `data` on a connection of a child process of uid and gid 65534 (no other
        groups); returns the payload of the reply it got (None if the agent closed first) and,
        with wait_close, whether the agent then closed the connection (within a 30 s hang
        guard)."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the test runner
            status = 1
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                closed = None
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(30)
                    s.connect(self.sock)
                    s.sendall(data)
                    payload = read_reply(s)
                    if wait_close:
                        try:
                            closed_by_peer(s)
                            closed = True
                        except socket.timeout:
                            closed = False
                out = json.dumps({"uid": os.getuid(), "reply": (payload or b"").hex(),
                                  "closed": closed})
                status = 0
            except BaseException as e:
                out = json.dumps({"error": repr(e)})
            finally:
                try:
                    os.write(w, out.encode())
                finally:
                    os._exit(status)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            text = f.read()
        _, status = os.waitpid(pid, 0)
        result = json.loads(text)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, result)
        self.assertEqual(result["uid"], NOBODY)
        payload = bytes.fromhex(result["reply"]) or None
        return (payload, result["closed"]) if wait_close else payload

    def open_to_others(self):
        """A misconfigured socket: others may pass through its directory and connect to it."""
        os.chmod(self.kms.root, 0o711)
        os.chmod(self.sock_dir, 0o711)
        os.chmod(self.sock, 0o666)

    def test_a_request_of_another_uid_is_refused_with_exit_code_4_and_audited_denied(self):
        value = "roots-value-3a94e1"
        self.make_secret("app/mine", value)
        info = self.start_agent()
        self.open_to_others()
        before = self.head()

        payload = self.as_nobody(request(OP_SECRET_GET, self.kms.vault,
                                         secret_get_fields("app/mine")))
        self.assertIsNotNone(payload, "the agent closed without a reply")
        self.assertNotIn(value.encode(), payload, "the stranger got the secret's value")
        reply = parse_reply(payload)
        self.assertEqual((reply["status"], reply["code"]), (STATUS_ERROR, kmsenv.REFUSED), reply)
        self.assertIn("may not secret.get", reply["message"])
        self.assertIn("only the vault's owner (uid 0)", reply["message"])

        log = self.records_after(before)
        self.assertEqual([(x["action"], x["outcome"]) for x in log], [("secret.get", "denied")],
                         log)
        rec = log[0]
        self.assertEqual((rec["uid"], rec["resource"], rec["error_code"]),
                         (NOBODY, "secret/app/mine", "refused"), rec)
        self.assertEqual((rec["params"]["rule"], rec["params"]["channel"]),
                         ("not-owner", "agent"), rec)
        self.assertEqual(rec["params"]["agent"]["pid"], info["pid"], rec)
        self.assertNotIn(value, json.dumps(rec))
        # The agent goes on serving its owner.
        self.assertTrue(is_running(info["pid"]))
        os.chmod(self.sock_dir, 0o700)
        self.assertEqual(self.served("secret", "get", "app/mine").out, value)
        self.verify_ok()


    def test_agent_status_and_stop_are_refused_to_another_uid_and_name_nothing_of_the_agent(self):
        info = self.start_agent()
        self.open_to_others()
        for op in (OP_AGENT_STATUS, OP_AGENT_STOP):
            with self.subTest(op=hex(op)):
                payload = self.as_nobody(request(op, ""))
                self.assertIsNotNone(payload, "the agent closed without a reply")
                for leak in (self.kms.vault, self.sock, str(info["pid"])):
                    self.assertNotIn(leak.encode(), payload, "the agent told a stranger about it")
                reply = parse_reply(payload)
                self.assertEqual((reply["status"], reply["code"]),
                                 (STATUS_ERROR, kmsenv.REFUSED), reply)
        self.assertTrue(is_running(info["pid"]), "a stranger stopped the agent")
        os.chmod(self.sock_dir, 0o700)
        self.assertEqual(self.kms.json("agent", "status", "--json",
                                       "--socket", self.sock)["pid"], info["pid"])

    def test_a_refused_file_key_use_of_another_uid_does_not_hold_its_connection_open(self):
        self.kms.ok("key", "create", "--alias", "alias/files")
        info = self.start_agent()
        self.open_to_others()
        before = self.head()
        data_key = os.urandom(32)
        wrap = request(OP_FILE_WRAP, self.kms.vault,
                       lp(b"stranger.bin") + struct.pack(">I", 1) + lp(b"alias/files") +
                       lp(data_key) + struct.pack(">I", 0))
        payload, closed = self.as_nobody(wrap, wait_close=True)
        self.assertIsNotNone(payload, "the agent closed without a reply")
        reply = parse_reply(payload)
        self.assertEqual((reply["status"], reply["code"]), (STATUS_ERROR, kmsenv.REFUSED), reply)
        self.assertIn("may not file.encrypt", reply["message"])
        # No file session began: the connection is closed when no next request comes, as any
        # other is, and does not hold one of the agent's connections for good.
        self.assertTrue(closed, "the agent kept the stranger's connection open")
        log = self.records_after(before)
        denied = [x for x in log if x["action"] == "file.encrypt"]
        self.assertEqual([(x["outcome"], x["uid"], x["params"]["rule"]) for x in denied],
                         [("denied", NOBODY, "not-owner")], log)
        ops = self.kms.vault + ".ops"
        self.assertEqual(os.listdir(ops) if os.path.isdir(ops) else [], [], "a lock file was left")
        self.assertTrue(is_running(info["pid"]))
        self.verify_ok()


class SlowClients(RequestsTestCase):
    def test_two_slow_clients_do_not_hold_a_third_and_are_closed_without_a_whole_request(self):
        value = "not-held-up-value-7e3"
        self.make_secret("app/slow", value)
        info = self.start_agent()
        before = self.head()
        silent = self.connect()
        trickling = self.connect()
        msg = request(OP_SECRET_GET, self.kms.vault, secret_get_fields("app/slow"))
        trickling.sendall(msg[:3])
        stop = threading.Event()

        def trickle():
            for b in msg[3:]:
                if stop.wait(1):
                    return
                try:
                    trickling.send(bytes([b]))
                except OSError:
                    return  # the agent closed it

        dripper = threading.Thread(target=trickle)
        dripper.start()
        self.addCleanup(dripper.join)
        self.addCleanup(stop.set)

        # No PIN: only the agent can have served it. The timeout is a hang guard.
        r = self.client("secret", "get", "app/slow", timeout=20)
        self.assertEqual((r.rc, r.out, r.err), (0, value, ""), r.show())

        # The agent closes both: it never got a whole request (no reply, or an error reply).
        for name, s in (("silent", silent), ("trickling", trickling)):
            with self.subTest(connection=name):
                try:
                    left = closed_by_peer(s)
                except socket.timeout:
                    self.fail("the agent kept a connection open without a whole request")
                if left:
                    reply = parse_reply(left[4:])
                    self.assertEqual((reply["status"], reply["code"]),
                                     (STATUS_ERROR, kmsenv.USAGE), reply)
        stop.set()
        dripper.join()

        log = self.records_after(before)
        gets = [x for x in log if x["action"] == "secret.get"]
        self.assertEqual([(x["outcome"], x["params"]["channel"]) for x in gets], [("ok", "agent")])
        refused = [x for x in log if x["action"] == "agent.request"]
        self.assertEqual([x["outcome"] for x in refused], ["error", "error"], refused)
        for x in refused:
            self.assertTrue(x["params"].get("reason"), x)
        self.assertTrue(is_running(info["pid"]))
        self.assertEqual(self.served("secret", "get", "app/slow").out, value)
        self.verify_ok()


class Stopping(RequestsTestCase):
    def test_agent_stop_is_answered_every_time_and_returns_once_the_agent_has_exited(self):
        # The stop request's own connection must get its answer, however soon the agent's main
        # loop wakes up to close the other connections.
        for cycle in range(10):
            pid = self.start_agent()["pid"]
            r = self.kms.run("agent", "stop", "--socket", self.sock)
            self.assertEqual((r.rc, r.out), (0, ""), f"cycle {cycle}: {r.show()}")
            self.assertIn("kmsctl: the agent stopped", r.err)
            self.assertFalse(is_running(pid), f"cycle {cycle}: agent stop returned before the "
                                              f"agent exited")
            self.assertFalse(os.path.lexists(self.sock))
        stops = [x for x in self.kms.records() if x["action"] == "agent.stop"]
        self.assertEqual([x["params"]["reason"] for x in stops], ["stop"] * 10)
        self.verify_ok()

    def test_several_stop_requests_at_once_end_the_agent_once(self):
        # Stop requests that arrive while the agent is already stopping: each is answered or its
        # connection closed, and the agent exits (a hang here is a deadlock in the agent).
        for cycle in range(10):
            pid = self.start_agent()["pid"]
            conns = [self.connect() for _ in range(4)]
            for c in conns:
                try:
                    c.sendall(request(OP_AGENT_STOP, ""))
                except OSError:
                    pass  # the agent already closed this one
            self.wait_for(lambda: not is_running(pid), what=f"cycle {cycle}: the agent exiting")
            for c in conns:
                try:
                    left = closed_by_peer(c)
                except socket.timeout:
                    self.fail(f"cycle {cycle}: a stop request got neither an answer nor an end")
                if left:
                    self.assertEqual(parse_reply(left[4:])["status"], STATUS_OK, left)
                c.close()
            self.assertFalse(os.path.lexists(self.sock))
        stops = [x for x in self.kms.records() if x["action"] == "agent.stop"]
        self.assertEqual([x["params"]["reason"] for x in stops], ["stop"] * 10)
        self.verify_ok()


class ParallelClients(RequestsTestCase):
    def test_8_clients_mixing_reads_and_writes_all_succeed_lose_nothing_and_audit_each_op(self):
        self.kms.ok("key", "create", "--alias", "alias/par")
        info = self.start_agent()
        before = self.head()

        def worker(i):
            """15 commands through the agent; the operations it ran, by audit action."""
            name = f"app/par-{i}"
            done = Counter()

            def run(action, *args, input=None):
                r = self.client(*args, input=input)
                if r.rc != 0:
                    raise AssertionError(f"client {i}:\n" + r.show())
                done[action] += 1
                return r

            def put(n):
                value = f"value-{i}-{n}-{os.urandom(4).hex()}"
                if n == 0:
                    run("secret.create", "secret", "create", name, "--value-stdin", input=value)
                else:
                    run("secret.put", "secret", "put", name, "--value-stdin", input=value)
                return value

            def get(expected):
                out = run("secret.get", "secret", "get", name).out
                if out != expected:
                    raise AssertionError(f"client {i} read {out!r}, wrote {expected!r}")

            def round_trip():
                plain = os.urandom(48)
                blob = run("key.encrypt", "encrypt", "--key", "alias/par", input=plain).out
                back = run("key.decrypt", "decrypt", input=blob).raw
                if back != plain:
                    raise AssertionError(f"client {i}: the round trip changed the data")

            value = put(0)
            get(value)
            value = put(1)
            get(value)
            round_trip()
            run("key.tag", "key", "tag", "alias/par", f"client{i}=tag-{i}")
            value = put(2)
            get(value)
            run("key.describe", "key", "describe", "alias/par")
            if len(run("random.generate", "random", "--bytes", "16", "--format", "hex")
                   .out.strip()) != 32:
                raise AssertionError(f"client {i}: not 16 random bytes in hex")
            value = put(3)
            round_trip()
            get(value)
            return value, done

        results = [None] * 8
        errors = []

        def thread(i):
            try:
                results[i] = worker(i)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=thread, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        performed = sum((done for _, done in results), Counter())
        self.assertEqual(sum(performed.values()), 8 * 15)

        # One record per operation, each through the agent, in a log that verifies.
        log = self.records_after(before)
        self.assertEqual(Counter(x["action"] for x in log), performed)
        for x in log:
            self.assertEqual((x["outcome"], x["params"]["channel"],
                              x["params"]["agent"]["pid"]), ("ok", "agent", info["pid"]), x)
        self.assertEqual(self.kms.json("agent", "status", "--json",
                                       "--socket", self.sock)["requests"], 8 * 15)
        self.verify_ok()
        # Nothing written was lost: each secret holds its last value, the key every tag.
        for i, (value, _) in enumerate(results):
            self.assertEqual(self.kms.ok("secret", "get", f"app/par-{i}").out, value)
            self.assertEqual(self.served("secret", "get", f"app/par-{i}").out, value)
        tags = self.kms.json("key", "describe", "alias/par", "--json")["tags"]
        self.assertEqual({k: v for k, v in tags.items() if k.startswith("client")},
                         {f"client{i}": f"tag-{i}" for i in range(8)})


class MalformedMessages(RequestsTestCase):
    def test_malformed_and_oversized_messages_get_an_error_and_an_audit_record_each(self):
        value = "after-the-garbage-value"
        self.make_secret("app/ok", value)
        info = self.start_agent()
        before = self.head()
        vault = self.kms.vault
        whole = request(OP_SECRET_GET, vault, secret_get_fields("app/ok"))
        cut_fields = request(OP_SECRET_GET, vault, lp(b"app/ok") + b"\x01")  # stage: no byte
        cases = [
            ("2 MiB announced", struct.pack(">I", 2 * MIB), True, str(2 * MIB)),
            ("not a request", frame(b"NOPE, not a request at all"), True, None),
            ("unknown operation", request(999, vault), True, "999"),
            ("fields cut short", cut_fields, True, None),
            ("connection cut mid-frame", struct.pack(">I", 100) + whole[4:14], False, None),
        ]
        reasons = []
        for what, data, replies, needle in cases:
            with self.subTest(what):
                seen = self.head()
                s = self.connect()
                s.sendall(data)
                if replies:
                    payload = read_reply(s)
                    self.assertIsNotNone(payload, "the agent closed without a reply")
                    reply = parse_reply(payload)
                    self.assertEqual((reply["status"], reply["code"]),
                                     (STATUS_ERROR, kmsenv.USAGE), reply)
                    self.assertIn("could not read the request", reply["message"])
                    self.assertTrue(reply["hint"], reply)
                    self.assertEqual(closed_by_peer(s), b"", "more than one reply")
                s.close()
                rows = self.wait_for(lambda: self.kms.audit_rows(seen), what="its record")
                self.assertEqual([(x["action"], x["outcome"], x["error_code"]) for x in rows],
                                 [("agent.request", "error", "usage")], rows)
                reason = rows[0]["params"].get("reason")
                self.assertTrue(reason, rows)
                if needle:
                    self.assertIn(needle, reason)
                if replies:
                    self.assertIn(reason, reply["message"])
                reasons.append(reason)
        self.assertEqual(len(set(reasons)), len(cases), reasons)

        log = self.records_after(before)
        self.assertEqual([x["action"] for x in log], ["agent.request"] * len(cases), log)
        for x in log:
            self.assertEqual((x["uid"], x["params"]["channel"]), (os.geteuid(), "agent"), x)
        self.assertTrue(is_running(info["pid"]))
        self.assertEqual(self.served("secret", "get", "app/ok").out, value)
        self.verify_ok()


class FileThroughTheAgent(RequestsTestCase):
    def setUp(self):
        super().setUp()
        self.kms.ok("key", "create", "--alias", "alias/files")

    def start_traced_agent(self, log):
        """`agent start --foreground` under strace -f, tracing the files the agent opens."""
        strace = shutil.which("strace")
        if strace is None:
            self.skipTest("strace is not installed (Debian package strace; scripts/setup.sh "
                          "installs it)")
        argv = [strace, "-f", "-qq", "-s", "4096", "-e", "trace=open,openat,openat2", "-o", log,
                KMSCTL, "agent", "start", "--foreground", "--json", "--socket", self.sock]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.kms.base_env(), cwd=self.kms.root,
                             start_new_session=True)

        def reap():
            # The agent first: killed, strace would leave it running with the pipes open.
            self.stop_agents()
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)
        self.addCleanup(reap)
        text, info = "", None
        while info is None:
            line = p.stdout.readline().decode()
            if not line:
                _, err = p.communicate(timeout=30)
                err = err.decode("utf-8", "replace")
                if err.startswith("strace:") and "kmsctl" not in err:
                    self.skipTest(f"strace cannot trace here: {err.strip()}")
                self.fail(f"the agent exited before printing its JSON:\n{err}")
            text += line
            try:
                info = json.loads(text)
            except ValueError:
                pass
        self.agent_pids.append(info["pid"])
        return p, info

    def file_records(self, seq):
        """The two records of the one file operation after `seq`, read from the vault file."""
        rows = [x for x in self.kms.audit_rows(seq) if x["action"].startswith("file.")]
        self.assertEqual([x["outcome"] for x in rows], ["started", "ok"], rows)
        return rows

    def assertSameRecords(self, direct, served, agent_pid):
        """The records of an operation through the agent are those of the same operation in
        process, plus the channel and the agent."""
        for d, a in zip(direct, served):
            self.assertEqual((a["action"], a["outcome"], a["error_code"]),
                             (d["action"], d["outcome"], d["error_code"]))
            self.assertEqual(set(a["params"]), set(d["params"]) | {"channel", "agent"}, a)
            self.assertNotIn("channel", d["params"], d)
            self.assertEqual((a["params"]["channel"], a["params"]["agent"]["pid"]),
                             ("agent", agent_pid), a)
        self.assertEqual(served[0]["params"]["step"], "start")
        self.assertEqual(served[1]["params"]["step"], "done")
        self.assertEqual(served[1]["params"]["started_seq"], served[0]["seq"])
        # Every other field (the keys, the context; the bytes and frames) is the same.
        for i, differ in ((0, {"file"}), (1, {"file", "started_seq"})):
            for field in set(direct[i]["params"]) - differ:
                self.assertEqual(served[i]["params"][field], direct[i]["params"][field], field)

    def test_a_file_through_the_agent_never_reaches_it_and_matches_one_encrypted_in_process(self):
        trace = self.kms.path("agent.strace")
        p, info = self.start_traced_agent(trace)
        work = self.kms.path("work")
        os.mkdir(work, 0o700)
        plain = os.urandom(20 * MIB + 12345)
        src = os.path.join(work, "plain.bin")
        write(src, plain)
        via_agent, in_process = os.path.join(work, "agent.kenc"), os.path.join(work, "local.kenc")
        back_local = os.path.join(work, "back-local.bin")
        back_agent = os.path.join(work, "back-agent.bin")

        def op(args, agent):
            seq = self.head()
            quiet = ["--no-progress"] if args[1] != "rewrap" else []
            r = self.client(*args, *quiet, pin=not agent, sock=agent, cwd=work)
            self.assertEqual(r.rc, 0, r.show())
            return self.file_records(seq)

        enc_agent = op(["file", "encrypt", "--key", "alias/files", "-o", via_agent, src], True)
        enc_local = op(["file", "encrypt", "--key", "alias/files", "-o", in_process, src], False)
        dec_local = op(["file", "decrypt", "-o", back_local, via_agent], False)
        dec_agent = op(["file", "decrypt", "-o", back_agent, in_process], True)
        self.assertEqual(read(back_local), plain, "the agent's encryption did not round-trip")
        self.assertEqual(read(back_agent), plain, "the agent's decryption did not round-trip")

        # file rewrap reads and writes the file here too: the agent rewraps only the data key.
        self.kms.ok("key", "rotate", "alias/files")
        rw_agent = op(["file", "rewrap", via_agent], True)
        rw_local = op(["file", "rewrap", in_process], False)
        self.assertEqual(rw_agent[0]["params"]["to_keys"][0]["version"], 2)
        for enc in (via_agent, in_process):
            out = os.path.join(work, "back.bin")
            op(["file", "decrypt", "-o", out, enc], False)
            self.assertEqual(read(out), plain, "a rewrapped file did not decrypt")
            os.unlink(out)

        self.assertSameRecords(enc_local, enc_agent, info["pid"])
        self.assertSameRecords(dec_local, dec_agent, info["pid"])
        self.assertSameRecords(rw_local, rw_agent, info["pid"])
        self.assertEqual((enc_agent[1]["params"]["bytes"], enc_agent[1]["params"]["frames"]),
                         (len(plain), 21))
        self.assertEqual(enc_agent[0]["params"]["file"], src)
        self.assertEqual(dec_agent[0]["params"]["file"], in_process)
        self.assertEqual(sorted(os.listdir(work)), sorted(
            os.path.basename(f) for f in (src, via_agent, in_process, back_local, back_agent)),
            "temporary files were left")

        self.kms.ok("agent", "stop", "--socket", self.sock)
        p.wait(timeout=30)
        with open(trace, encoding="utf-8", errors="replace") as f:
            opened = f.read()
        # The trace followed the agent: it opened the lock files of the operations it served
        # (beside a vault file; a database's are in the user's data directory).
        ops = self.kms.vault + ".ops/"
        if self.kms.db:
            ops = os.path.join(self.kms.home, ".local", "share", "kmsctl",
                               self.kms.status()["vault"]["id"] + ".ops/")
        self.assertIn(ops, opened)
        self.assertNotIn(work, opened, "the agent opened something in the client's directory")
        for name in os.listdir(work):
            self.assertNotIn(name, opened, f"the agent opened {name}")
        self.assertNotIn(".tmp-", opened, "the agent opened a temporary output")
        self.verify_ok()


class SlowInput(RequestsTestCase):
    def test_a_decrypt_whose_input_comes_slowly_through_a_pipe_is_served_whole(self):
        # The client asks the agent whether it serves the vault before it reads the file's
        # header: a header that arrives after the agent's request deadline must not matter.
        self.start_agent()
        self.kms.ok("key", "create", "--alias", "alias/slow")
        plain = self.kms.path("slow.txt")
        with open(plain, "wb") as f:
            f.write(os.urandom(300_000))
        enc = self.kms.path("slow.txt.kenc")
        self.kms.ok("file", "encrypt", "--key", "alias/slow", "-o", enc, plain)
        out = self.kms.path("slow.out")
        env = self.client_env(self.sock, False)
        script = f"sleep 7; cat {shlex.quote(enc)}"
        feeder = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE)
        self.addCleanup(lambda: (feeder.poll() is None and feeder.kill(), feeder.wait()))
        p = subprocess.run([KMSCTL, "file", "decrypt", "--no-progress", "-o", out, "-"],
                           env=env, stdin=feeder.stdout, capture_output=True, timeout=120,
                           cwd=self.kms.root, start_new_session=True)
        feeder.stdout.close()
        r = Result.of(["file", "decrypt", "-"], p.returncode, p.stdout, p.stderr)
        self.assertEqual(r.rc, 0, r.show())
        with open(out, "rb") as a, open(plain, "rb") as b:
            self.assertEqual(a.read(), b.read())
        late = [x for x in self.kms.records() if x["action"] == "agent.request"]
        self.assertEqual(late, [], "the agent gave up on the slow client")
        done = [x for x in self.kms.records()
                if x["action"] == "file.decrypt" and x["params"].get("step") == "done"]
        self.assertEqual(len(done), 1)
        self.assertEqual(done[0]["params"].get("channel"), "agent")
        self.verify_ok()


class ClientKilled(RequestsTestCase):
    def test_a_client_killed_in_the_middle_of_a_file_leaves_the_agent_to_end_its_record(self):
        self.kms.ok("key", "create", "--alias", "alias/files")
        self.make_secret("app/after", "after-the-kill")
        info = self.start_agent()
        out = self.kms.path("killed.kenc")
        before = self.head()
        p = subprocess.Popen([KMSCTL, "file", "encrypt", "--key", "alias/files", "--frame-size",
                              "1KiB", "--no-progress", "-o", out, "-"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.client_env(self.sock),
                             cwd=self.kms.root, start_new_session=True)

        def reap():
            if p.poll() is None:
                p.kill()
            p.communicate()
        self.addCleanup(reap)
        p.stdin.write(os.urandom(3 * 1024))  # a few frames; the pipe stays open
        p.stdin.flush()
        started = self.wait_for(
            lambda: [x for x in self.kms.audit_rows(before) if x["outcome"] == "started"],
            what="the started record")
        self.assertEqual(len(started), 1, started)
        start = started[0]
        self.assertEqual((start["action"], start["params"]["channel"]),
                         ("file.encrypt", "agent"), start)
        self.assertIsNone(p.poll(), "the client did not wait for the rest of its input")
        p.kill()
        p.wait(timeout=30)

        def end():
            return [x for x in self.kms.audit_rows(start["seq"])
                    if x["params"].get("started_seq") == start["seq"]]
        ends = self.wait_for(end, what="the agent's end record")
        self.assertEqual(len(ends), 1, ends)
        rec = ends[0]
        self.assertEqual((rec["action"], rec["resource"], rec["outcome"]),
                         ("file.encrypt", start["resource"], "error"), rec)
        self.assertEqual((rec["params"]["step"], rec["params"]["file"],
                          rec["params"]["channel"]), ("end", "-", "agent"), rec)
        self.assertNotIn("closed_by", rec["params"], "not ended by the agent")
        # A process that died: FORMAT.md §8 names that error code `interrupted`.
        self.assertEqual(rec["error_code"], "interrupted", rec)
        self.assertFalse(os.path.exists(out), "the output of a killed client was published")
        # The agent removes the operation's lock file once the end record is committed: right
        # after the record can be read, not with it.
        lock = os.path.join(self.kms.vault + ".ops", "%d.lock" % start["seq"])
        self.wait_for(lambda: not os.path.exists(lock), what="the lock file's removal")

        # The agent goes on; no later command ends the operation a second time.
        self.assertTrue(is_running(info["pid"]))
        self.assertEqual(self.served("secret", "get", "app/after").out, "after-the-kill")
        self.kms.ok("status")
        self.assertEqual(len(end()), 1)
        self.verify_ok()


if __name__ == "__main__":
    kmsenv.main()
