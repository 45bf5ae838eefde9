"""kmsctl agent: one process of the user keeps the vault open (its token session logged in) and
runs that user's other kmsctl commands, so that they need no PIN. What a user sees: the lines
`agent start` prints for eval, the socket in a private directory, commands served without a PIN
with their own exit codes, messages, files and standard input, the commands it leaves to the
calling process, the audit records of every served operation, the ways an agent ends (stop, idle,
lifetime, SIGTERM, a replaced vault), and that it talks to no other user in either direction.

Every agent a test starts is stopped in its cleanup (SIGTERM, then SIGKILL), found by its pid and
by a marker in its environment, even when the test failed half-way."""

import concurrent.futures
import glob
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KMSCTL, RFC3339_MS, KmsTestCase, Result, file_mode, file_store_only

NOBODY = 65534
MARKER = "KMS_E2E_AGENT_OWNER"  # in the environment of every agent a test starts
NO_PIN = "no token user PIN given"
START_FIELDS = {"socket", "pid", "vault", "idle_timeout_s", "max_lifetime_s"}
STATUS_FIELDS = {"pid", "socket", "vault", "started", "requests", "idle_timeout_s",
                 "max_lifetime_s"}
IS_ROOT = os.geteuid() == 0


def process_state(pid):
    """The state letter of process `pid` (R, S, Z...), or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def is_running(pid):
    """True while `pid` is a process that has not exited (a zombie has)."""
    return process_state(pid) not in (None, "Z", "X")


def processes_marked(value):
    """Running processes whose environment holds MARKER=value."""
    needle = f"{MARKER}={value}".encode()
    found = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(os.path.join(d, "environ"), "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        pid = int(os.path.basename(d))
        if needle in env and is_running(pid):
            found.append(pid)
    return found


def as_nobody():
    """The argv prefix that runs a command as uid/gid 65534 with no supplementary groups."""
    if shutil.which("setpriv"):
        return [shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}",
                "--clear-groups"]
    if shutil.which("runuser"):
        return [shutil.which("runuser"), "-u", "nobody", "--"]
    return None


# A stand-in for an agent, run as nobody: it listens at argv[1] and, until SIGTERM, counts the
# connections, message bytes and descriptors it receives; then prints them as JSON.
FAKE_AGENT = r"""
import array, json, os, signal, socket, sys
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o666)
srv.listen(16)
srv.settimeout(0.05)
stats = {"uid": os.getuid(), "connections": 0, "messages": 0, "bytes": 0, "fds": 0}
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("ready", flush=True)
while not stop:
    try:
        conn, _ = srv.accept()
    except (OSError, socket.timeout):
        continue
    stats["connections"] += 1
    conn.settimeout(2)
    try:
        while True:
            msg, anc, flags, addr = conn.recvmsg(1 << 17, socket.CMSG_SPACE(64 * 4))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
                    stats["fds"] += len(fds)
                    for fd in fds:
                        os.close(fd)
            if not msg and not anc:
                break
            stats["messages"] += 1  # reads with data: a client that sends nothing makes none
            stats["bytes"] += len(msg)
    except OSError:
        pass
    conn.close()
print(json.dumps(stats), flush=True)
"""


# A rotation hook that, at `create`, writes its environment to ./env.NAME beside itself.
ENV_HOOK = """#!/bin/sh
[ "$KMSCTL_ROTATION_STEP" = create ] || exit 0
env > "$(dirname "$0")/env.$KMSCTL_SECRET_NAME"
"""
CALLER = "KMS_E2E_CALLER_ONLY"  # in the environment of the calling kmsctl, never of the agent


# A bare client (docs/FORMAT.md §13): it sends a `status` request (op 1) for the vault argv[2],
# of wire version argv[3], and prints the reply it gets, as JSON.
WIRE_VERSION = 7
RAW_CLIENT = r"""
import json, socket, struct, sys
def lp(b):
    return struct.pack(">I", len(b)) + b
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
payload = b"KMAQ" + bytes([int(sys.argv[3])]) + struct.pack(">H", 1) + lp(sys.argv[2].encode())
s.sendall(struct.pack(">I", len(payload)) + payload)
m = b""
while len(m) < 4 or len(m) < 4 + struct.unpack(">I", m[:4])[0]:
    chunk = s.recv(1 << 17)
    if not chunk:
        break
    m += chunk
m = m[4:]
out = {"magic": m[:4].decode(), "version": m[4], "status": m[5]}
if m[5] == 1:
    out["code"] = m[6]
    pos = 7
    text_len = struct.unpack(">I", m[pos:pos + 4])[0]
    out["text"] = m[pos + 4:pos + 4 + text_len].decode()
    pos += 4 + text_len
    hint_len = struct.unpack(">I", m[pos:pos + 4])[0]
    out["hint"] = m[pos + 4:pos + 4 + hint_len].decode()
print(json.dumps(out))
"""


class AgentTestCase(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.agent_pids = []
        self.addCleanup(self.stop_every_agent)  # runs before the temporary directory goes

    # ---- agents ----
    def marked(self, env=None):
        e = {MARKER: self.kms.root}
        if env:
            e.update(env)
        return e

    def track(self, pid):
        self.agent_pids.append(int(pid))
        return int(pid)

    def start_agent(self, *args, env=None):
        """`kmsctl agent start --json ARGS` (with the PIN); the JSON it printed."""
        r = self.kms.run("agent", "start", "--json", *args, env=self.marked(env))
        if r.rc == 0:
            info = json.loads(r.out)
            self.track(info["pid"])
            return info
        for pid in processes_marked(self.kms.root):  # clean up whatever it may have left
            self.track(pid)
        raise AssertionError("agent start failed:\n" + r.show())

    def live_agents(self):
        return processes_marked(self.kms.root)

    def stop_every_agent(self):
        pids = set(self.agent_pids) | set(self.live_agents())
        for pid in pids:
            if is_running(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        while any(is_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:
            if is_running(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait_for(self, predicate, timeout=10, what="the condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        self.fail(f"{what} did not happen within {timeout}s")

    def wait_gone(self, pid, timeout=10):
        self.wait_for(lambda: not is_running(pid), timeout, f"agent pid {pid} exiting")

    def agent_dirs(self, base=None):
        return glob.glob(os.path.join(base or self.kms.root, "kmsctl-agent.*"))

    # ---- clients ----
    def client_pid(self, *args, sock, input=None, cwd=None, env=None, pin=False):
        """kmsctl ARGS with KMSCTL_AGENT_SOCK=sock and (unless pin) no PIN in its environment;
        stdin is `input` (bytes) or /dev/null. Returns (Result, the client's pid)."""
        e = self.kms.base_env()
        if not pin:
            e.pop("KMSCTL_PIN_FILE", None)
            e.pop("KMSCTL_PIN", None)
        if sock is not None:
            e["KMSCTL_AGENT_SOCK"] = sock
        if env:
            e.update(env)
        p = subprocess.Popen([KMSCTL, *args],
                             stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                             cwd=cwd or self.kms.root, start_new_session=True)
        try:
            out, err = p.communicate(input, timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        r = Result(p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        self.kms.transcript.append((list(args), r))
        return r, p.pid

    def client(self, *args, **kw):
        return self.client_pid(*args, **kw)[0]

    def served_ok(self, *args, **kw):
        r = self.client(*args, **kw)
        if r.rc != 0:
            raise AssertionError("expected success through the agent:\n" + r.show(args))
        return r

    # ---- the vault, without any agent and with the PIN ----
    def value_file(self, name, value):
        """A 0600 file holding exactly `value` (no newline)."""
        path = self.kms.path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return path

    def make_secret(self, name, value, vault=None):
        f = self.value_file("value-" + name.replace("/", "_"), value)
        self.kms.ok("secret", "create", name, "--value-file", f,
                    env={"KMSCTL_VAULT": vault} if vault else None)

    def verify_ok(self):
        rep = self.kms.json("audit", "verify", "--json")
        self.assertIs(rep["ok"], True, rep)
        return rep

    def actions(self, name):
        return [r for r in self.kms.records() if r["action"] == name]

    def agent_status(self, sock):
        return self.kms.json("agent", "status", "--json", "--socket", sock)


class Start(AgentTestCase):
    def test_agent_start_prints_lines_to_eval_and_leaves_an_agent_serving_in_a_private_dir(self):
        self.kms.init()
        r = self.kms.run("agent", "start", env=self.marked())
        self.assertOk(r)
        m = re.fullmatch(r"KMSCTL_AGENT_SOCK='([^']+)'; export KMSCTL_AGENT_SOCK;\n"
                         r"echo kmsctl agent pid (\d+) serves '([^']+)';\n", r.out)
        self.assertIsNotNone(m, "not the two lines for eval:\n" + r.show())
        sock, pid, vault = m.group(1), self.track(m.group(2)), m.group(3)
        self.assertEqual(vault, self.kms.shown_vault)
        self.assertTrue(is_running(pid), "agent start exited 0 but its agent is not running")
        # The default socket: agent.sock in a new kmsctl-agent.XXXXXX directory under $TMPDIR.
        d = os.path.dirname(sock)
        self.assertEqual(os.path.dirname(d), self.kms.root)
        self.assertRegex(os.path.basename(d), r"^kmsctl-agent\.[A-Za-z0-9]{6}$")
        self.assertEqual(os.path.basename(sock), "agent.sock")
        st = os.lstat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual((file_mode(d), file_mode(sock)), (0o700, 0o600))
        self.assertEqual((os.stat(d).st_uid, st.st_uid), (os.geteuid(), os.geteuid()))
        self.assertEqual(self.served_ok("secret", "list", sock=sock).rc, 0)
        (rec,) = self.actions("agent.start")
        self.assertEqual(rec["outcome"], "ok")
        self.assertEqual(rec["uid"], os.geteuid())
        p = rec["params"]
        self.assertEqual((p["pid"], p["socket"], p["idle_timeout_s"], p["max_lifetime_s"]),
                         (pid, sock, 600, 7200))

    def test_the_start_output_evals_in_sh_even_with_quotes_and_spaces_in_the_paths(self):
        odd_tmp = self.kms.path("it's a tmp")
        os.mkdir(odd_tmp, 0o700)
        vault = self.kms.path("my 'vault' dir", "v.db")
        self.kms.ok("init", env={"KMSCTL_VAULT": vault})
        self.make_secret("app/eval", "eval-value-77", vault=vault)
        script = ('eval "$("$K" agent start)" || exit 9\n'
                  'unset KMSCTL_PIN_FILE KMSCTL_PIN\n'
                  'printf "sock=%s\\n" "$KMSCTL_AGENT_SOCK"\n'
                  '"$K" secret get app/eval </dev/null || exit 8\n'
                  'printf "\\n"\n'
                  '"$K" agent stop --socket "$KMSCTL_AGENT_SOCK" || exit 7\n')
        env = self.kms.base_env()
        env.update(self.marked({"K": KMSCTL, "KMSCTL_VAULT": vault, "TMPDIR": odd_tmp}))
        p = subprocess.run(["sh", "-c", script], env=env, capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL, cwd=self.kms.root, start_new_session=True)
        out, err = p.stdout.decode(), p.stderr.decode()
        m = re.search(r"(?m)^kmsctl agent pid (\d+) serves (.*)$", out)
        if m:
            self.track(m.group(1))
        self.assertEqual(p.returncode, 0, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIsNotNone(m, out)
        self.assertEqual(m.group(2), vault)
        sock = re.search(r"(?m)^sock=(.*)$", out).group(1)
        self.assertEqual(os.path.dirname(os.path.dirname(sock)), odd_tmp)
        self.assertIn("eval-value-77\n", out)
        self.assertIn("kmsctl: the agent stopped", err)

    def test_start_json_names_socket_pid_vault_and_the_limits_in_seconds(self):
        self.kms.init()
        cases = [(("--idle-timeout", "90s"), 90, 7200),
                 (("--idle-timeout", "15m", "--max-lifetime", "1d"), 900, 86400),
                 (("--idle-timeout", "2h", "--max-lifetime", "3600"), 7200, 3600),
                 (("--idle-timeout", "45", "--max-lifetime", "30d"), 45, 30 * 86400),
                 (("--max-lifetime", "720h"), 600, 30 * 86400),
                 ((), 600, 7200)]
        for args, idle, life in cases:
            with self.subTest(args=args):
                info = self.start_agent(*args)
                self.assertEqual(set(info), START_FIELDS)
                self.assertEqual((info["idle_timeout_s"], info["max_lifetime_s"]), (idle, life))
                self.assertEqual(info["vault"], self.kms.shown_vault)
                self.assertTrue(is_running(info["pid"]))
                st = self.agent_status(info["socket"])
                self.assertEqual((st["pid"], st["idle_timeout_s"], st["max_lifetime_s"]),
                                 (info["pid"], idle, life))
                self.kms.ok("agent", "stop", "--socket", info["socket"])
                self.wait_gone(info["pid"])

    def test_the_default_socket_goes_under_XDG_RUNTIME_DIR_before_TMPDIR(self):
        self.kms.init()
        runtime = self.kms.path("runtime")
        os.mkdir(runtime, 0o700)
        info = self.start_agent(env={"XDG_RUNTIME_DIR": runtime})
        self.assertEqual(os.path.dirname(os.path.dirname(info["socket"])), runtime)
        self.assertEqual(self.agent_dirs(), [], "$TMPDIR is used although XDG_RUNTIME_DIR is set")
        self.assertEqual(file_mode(os.path.dirname(info["socket"])), 0o700)
        self.kms.ok("agent", "stop", "--socket", info["socket"])
        self.wait_gone(info["pid"])
        self.wait_for(lambda: self.agent_dirs(runtime) == [], what="the socket directory going")

    def test_a_duration_outside_1s_to_30d_or_without_a_known_unit_exits_2_and_starts_nothing(self):
        self.kms.init()
        bad = ("0", "0s", "31d", "721h", "2592001", "1w", "abc", "", "-5", "5x", "1.5h", "m",
               "10 m")
        for flag in ("--idle-timeout", "--max-lifetime"):
            for text in bad:
                with self.subTest(flag=flag, value=text):
                    r = self.kms.run("agent", "start", flag, text, env=self.marked())
                    self.assertError(r, 2, "not a duration")
        self.assertEqual(self.agent_dirs(), [])
        self.assertEqual(self.live_agents(), [])
        self.assertEqual(self.actions("agent.start"), [])

    def test_a_wrong_pin_exits_6_and_leaves_no_agent_and_no_socket_directory(self):
        self.kms.init()
        wrong = self.kms.write_secret_file("wrong-pin", "Wrong-Pin-31337")
        r = self.kms.run("agent", "start", env=self.marked({"KMSCTL_PIN_FILE": wrong}))
        self.assertError(r, 6, "CKR_PIN_INCORRECT")
        self.assertNotIn("Wrong-Pin-31337", r.err)
        self.assertEqual(self.agent_dirs(), [], "a socket directory was left behind")
        self.assertEqual(self.live_agents(), [], "an agent process was left behind")
        self.assertEqual(self.actions("agent.start"), [])

    def test_without_a_vault_agent_start_exits_6_and_creates_nothing(self):
        r = self.kms.run("agent", "start", env=self.marked())
        self.assertError(r, 6, self.kms.shown_vault)
        self.assertEqual(self.agent_dirs(), [])
        self.assertEqual(self.live_agents(), [])
        if self.kms.db:  # an empty database stays empty
            self.assertEqual(self.kms.sql("SELECT count(*) FROM pg_tables WHERE schemaname = "
                                          "'public'"), [(0,)])
        else:
            self.assertFalse(os.path.exists(self.kms.vault_dir))

    def test_foreground_serves_in_the_starting_process_until_stopped(self):
        self.kms.init()
        self.make_secret("app/fg", "fg-value")
        e = self.kms.base_env()
        e.update(self.marked())
        p = subprocess.Popen([KMSCTL, "agent", "start", "--foreground", "--json"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=e, cwd=self.kms.root,
                             start_new_session=True)
        self.track(p.pid)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.communicate()))
        text = ""
        info = None
        while info is None:
            line = p.stdout.readline().decode()
            self.assertNotEqual(line, "", "the foreground agent exited before printing its JSON")
            text += line
            try:
                info = json.loads(text)
            except ValueError:
                pass
        self.assertEqual(info["pid"], p.pid)
        self.assertEqual(self.served_ok("secret", "get", "app/fg", sock=info["socket"]).out,
                         "fg-value")
        self.assertIsNone(p.poll())
        self.kms.ok("agent", "stop", "--socket", info["socket"])
        self.assertEqual(p.wait(timeout=10), 0)


class InheritedDescriptors(AgentTestCase):
    def test_the_agent_keeps_no_descriptor_of_the_process_that_started_it(self):
        """A script that reads `agent start`'s extra pipe to its end (a CI runner's log, a
        `$(...)` with a redirection) must see the end when `agent start` exits, not when the
        agent does, and the agent must hold none of its starter's files."""
        self.kms.init()
        self.make_secret("app/s", "fd-value")
        r_fd, w_fd = os.pipe()
        log = open(self.kms.path("inherited.log"), "w")
        self.addCleanup(log.close)
        e = self.kms.base_env()
        e.update(self.marked())
        p = subprocess.Popen([KMSCTL, "agent", "start", "--json"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                             pass_fds=(w_fd, log.fileno()), cwd=self.kms.root,
                             start_new_session=True)
        os.close(w_fd)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err.decode())
        info = json.loads(out)
        self.track(info["pid"])
        # Every writer of the pipe is gone: reading it ends at once.
        with os.fdopen(r_fd, "rb") as r:
            ready, _, _ = select.select([r], [], [], 10)
            self.assertTrue(ready, "the pipe never ended: the agent holds its write end")
            self.assertEqual(r.read(), b"")
        held = [os.readlink(os.path.join("/proc/%d/fd" % info["pid"], fd))
                for fd in os.listdir("/proc/%d/fd" % info["pid"])]
        self.assertNotIn(os.path.realpath(log.name), held)
        self.assertEqual(self.served_ok("secret", "get", "app/s", sock=info["socket"]).out,
                         "fd-value")


class Socket(AgentTestCase):
    def private_dir(self, name="sock", mode=0o700):
        d = self.kms.path(name)
        os.mkdir(d)
        os.chmod(d, mode)
        return d

    def test_socket_flag_listens_at_that_path(self):
        self.kms.init()
        self.make_secret("app/s", "sock-value")
        path = os.path.join(self.private_dir(), "my.sock")
        info = self.start_agent("--socket", path)
        self.assertEqual(info["socket"], path)
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        self.assertEqual(file_mode(path), 0o600)
        self.assertEqual(self.agent_dirs(), [], "no directory of its own with --socket")
        self.assertEqual(self.served_ok("secret", "get", "app/s", sock=path).out, "sock-value")
        self.assertEqual(self.agent_status(path)["pid"], info["pid"])
        self.kms.ok("agent", "stop", "--socket", path)
        self.wait_gone(info["pid"])
        self.wait_for(lambda: not os.path.lexists(path), what="the socket file going")

    def test_socket_in_a_directory_others_can_write_is_refused_with_exit_4(self):
        self.kms.init()
        for mode in (0o770, 0o707, 0o720, 0o702, 0o777, 0o1777):
            with self.subTest(mode=oct(mode)):
                d = self.private_dir(f"open-{mode:o}", mode)
                path = os.path.join(d, "agent.sock")
                r = self.kms.run("agent", "start", "--socket", path, env=self.marked())
                self.assertError(r, 4, "is not yours alone", d)
                self.assertFalse(os.path.lexists(path))
        self.assertEqual(self.live_agents(), [])
        self.assertEqual(self.actions("agent.start"), [])

    @unittest.skipUnless(IS_ROOT, "needs root to give a directory to another user")
    def test_socket_in_a_directory_of_another_user_is_refused_with_exit_4(self):
        self.kms.init()
        d = self.private_dir("theirs")
        os.chown(d, NOBODY, NOBODY)
        path = os.path.join(d, "agent.sock")
        r = self.kms.run("agent", "start", "--socket", path, env=self.marked())
        self.assertError(r, 4, "is not yours alone")
        self.assertFalse(os.path.lexists(path))
        self.assertEqual(self.live_agents(), [])

    def test_an_existing_file_that_is_not_a_socket_is_refused_and_kept(self):
        self.kms.init()
        d = self.private_dir()
        regular = os.path.join(d, "file")
        with open(regular, "w") as f:
            f.write("precious\n")
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo, 0o600)
        for path in (regular, fifo):
            with self.subTest(path=os.path.basename(path)):
                r = self.kms.run("agent", "start", "--socket", path, env=self.marked())
                self.assertError(r, 4, path)
        with open(regular) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))
        self.assertEqual(self.live_agents(), [])

    def test_a_socket_where_an_agent_already_listens_is_refused_and_that_agent_goes_on(self):
        self.kms.init()
        self.make_secret("app/s", "first-agent")
        path = os.path.join(self.private_dir(), "agent.sock")
        first = self.start_agent("--socket", path)
        r = self.kms.run("agent", "start", "--socket", path, env=self.marked())
        self.assertError(r, 4, "already listens", path)
        self.assertEqual(self.live_agents(), [first["pid"]])
        self.assertEqual(self.agent_status(path)["pid"], first["pid"])
        self.assertEqual(self.served_ok("secret", "get", "app/s", sock=path).out, "first-agent")
        self.assertEqual(len(self.actions("agent.start")), 1)

    def test_a_socket_whose_directory_others_can_write_is_not_used_by_clients(self):
        """The directory was private when the agent started, then opened to others (who could
        now put their own socket there): clients no longer talk to it and run the command in
        their own process, with the PIN."""
        self.kms.init()
        self.make_secret("app/s", "local-value")
        d = self.private_dir()
        path = os.path.join(d, "agent.sock")
        info = self.start_agent("--socket", path)
        self.assertEqual(self.served_ok("secret", "get", "app/s", sock=path).out, "local-value")
        for mode in (0o770, 0o707, 0o777):
            with self.subTest(mode=oct(mode)):
                os.chmod(d, mode)
                r = self.client("secret", "get", "app/s", sock=path)  # no PIN: needs the agent
                self.assertEqual(r.rc, 6, r.show())
                r = self.client("secret", "get", "app/s", sock=path, pin=True)
                self.assertEqual((r.rc, r.out), (0, "local-value"), r.show())
        os.chmod(d, 0o700)
        self.assertEqual(self.agent_status(path)["requests"], 1, "only the first was served")
        self.assertEqual(self.served_ok("secret", "get", "app/s", sock=path).out, "local-value")
        self.kms.ok("agent", "stop", "--socket", path)
        self.wait_gone(info["pid"])

    def test_a_stale_socket_nobody_listens_on_is_replaced(self):
        self.kms.init()
        self.make_secret("app/s", "after-stale")
        path = os.path.join(self.private_dir(), "agent.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(path)
        s.close()  # the file stays; nothing listens on it
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        info = self.start_agent("--socket", path)
        self.assertEqual(info["socket"], path)
        self.assertEqual(self.served_ok("secret", "get", "app/s", sock=path).out, "after-stale")


class StatusAndStop(AgentTestCase):
    def test_agent_status_json_describes_the_running_agent_and_counts_its_requests(self):
        self.kms.init()
        self.make_secret("app/st", "v")
        info = self.start_agent("--idle-timeout", "5m", "--max-lifetime", "1h")
        st = self.kms.json("agent", "status", "--json", env={"KMSCTL_AGENT_SOCK": info["socket"]})
        self.assertEqual(set(st), STATUS_FIELDS)
        self.assertEqual((st["pid"], st["socket"], st["vault"]),
                         (info["pid"], info["socket"], self.kms.shown_vault))
        self.assertEqual((st["idle_timeout_s"], st["max_lifetime_s"], st["requests"]),
                         (300, 3600, 0))
        self.assertRegex(st["started"], RFC3339_MS)
        self.served_ok("secret", "get", "app/st", sock=info["socket"])
        self.served_ok("status", sock=info["socket"])
        st2 = self.agent_status(info["socket"])  # --socket instead of the variable
        self.assertEqual(st2["requests"], 2)
        self.assertEqual(st2["started"], st["started"])

    def test_status_and_stop_exit_6_when_no_agent_listens_and_2_when_no_socket_is_named(self):
        self.kms.init()
        nowhere = self.kms.path("nowhere", "agent.sock")
        for verb in ("status", "stop"):
            with self.subTest(verb=verb):
                r = self.kms.run("agent", verb, "--socket", nowhere)
                self.assertError(r, 6, f"no agent listens at {nowhere}")
                r = self.kms.run("agent", verb, env={"KMSCTL_AGENT_SOCK": nowhere})
                self.assertError(r, 6, f"no agent listens at {nowhere}")
                self.assertError(self.kms.run("agent", verb), 2)
                self.assertError(self.kms.run("agent", verb, env={"KMSCTL_AGENT_SOCK": ""}), 2)

    def test_agent_stop_ends_the_agent_removes_its_socket_directory_and_records_agent_stop(self):
        self.kms.init()
        self.make_secret("app/stop", "v")
        info = self.start_agent()
        sock, pid = info["socket"], info["pid"]
        self.served_ok("secret", "get", "app/stop", sock=sock)
        self.served_ok("secret", "list", sock=sock)
        r = self.kms.run("agent", "stop", env={"KMSCTL_AGENT_SOCK": sock})
        self.assertEqual((r.rc, r.out), (0, ""), r.show())
        self.assertIn("kmsctl: the agent stopped", r.err)
        self.wait_gone(pid)
        self.wait_for(lambda: not os.path.exists(os.path.dirname(sock)),
                      what="the socket directory going")
        self.assertEqual(self.agent_dirs(), [])
        (rec,) = self.actions("agent.stop")
        self.assertEqual(rec["outcome"], "ok")
        self.assertEqual((rec["params"]["pid"], rec["params"]["reason"],
                          rec["params"]["requests"]), (pid, "stop", 2))
        self.assertError(self.kms.run("agent", "status", "--socket", sock), 6, "no agent listens")
        self.verify_ok()

    def test_when_agent_stop_returns_the_agent_has_exited_so_another_can_start_at_once(self):
        # `kmsctl: the agent stopped` is printed; a script's next step must find it so, e.g.
        # `kmsctl agent stop --socket P && kmsctl agent start --socket P`.
        self.kms.init()
        self.make_secret("app/again", "again-value")
        d = self.kms.path("sock")
        os.mkdir(d, 0o700)
        path = os.path.join(d, "agent.sock")
        for cycle in range(3):
            with self.subTest(cycle=cycle):
                r = self.kms.run("agent", "start", "--json", "--socket", path, env=self.marked())
                self.assertOk(r)  # right after the previous cycle's stop
                pid = self.track(json.loads(r.out)["pid"])
                self.assertEqual(self.served_ok("secret", "get", "app/again", sock=path).out,
                                 "again-value")
                self.assertEqual(self.agent_status(path)["pid"], pid)
                r = self.kms.run("agent", "stop", "--socket", path)
                self.assertOk(r)
                state, left = process_state(pid), os.path.lexists(path)
                self.assertFalse(is_running(pid), f"agent stop returned while the agent (pid "
                                                  f"{pid}, state {state}) still ran")
                self.assertFalse(left, "agent stop returned before the socket was removed")


class Served(AgentTestCase):
    def test_a_served_secret_get_needs_no_pin_and_is_audited_with_the_agent_and_client_pids(self):
        self.kms.init()
        self.make_secret("app/db", "s3cr3t-value-9f2")
        direct = self.kms.ok("secret", "get", "app/db")
        info = self.start_agent()
        r, client = self.client_pid("secret", "get", "app/db", sock=info["socket"])
        self.assertEqual((r.rc, r.out, r.err), (0, direct.out, ""), r.show())
        self.assertEqual(r.out, "s3cr3t-value-9f2")
        log = self.kms.records()
        gets = [x for x in log if x["action"] == "secret.get"]
        self.assertEqual(len(gets), 2)
        self.assertNotIn("agent", gets[0]["params"], "the direct get ran in its own process")
        self.assertNotIn("channel", gets[0]["params"])
        served = gets[1]
        self.assertEqual(served["params"]["channel"], "agent")
        self.assertEqual(served["outcome"], "ok")
        self.assertEqual(served["params"]["agent"], {"pid": info["pid"], "client_pid": client})
        self.assertEqual(served["params"]["name"], "app/db")
        self.assertEqual(served["resource"], "secret/app/db")
        init = log[0]
        self.assertEqual((served["principal"], served["uid"]), (init["principal"], os.geteuid()))

    def test_a_served_client_loads_neither_openssl_nor_the_token_module(self):
        # What the client maps decides how long a served command takes (docs/PERFORMANCE.md): the
        # dynamic loader's own account (LD_DEBUG=files) names every library a process loads.
        self.kms.init()
        self.make_secret("app/db", "s3cr3t-value-4c1")
        info = self.start_agent()
        debug = {"LD_DEBUG": "files"}
        r, _ = self.client_pid("secret", "get", "app/db", sock=info["socket"], env=debug)
        self.assertEqual((r.rc, r.out), (0, "s3cr3t-value-4c1"), r.show())
        served = set(re.findall(r"file=(\S+) \[0\];\s+(?:needed|dynamically loaded)", r.err))
        self.assertTrue(served, "LD_DEBUG=files printed nothing:\n" + r.err)
        direct = self.kms.run("secret", "get", "app/db", env=debug)
        self.assertEqual((direct.rc, direct.out), (0, "s3cr3t-value-4c1"), direct.show())
        loaded = set(re.findall(r"file=(\S+) \[0\];\s+dynamically loaded", direct.err))
        # The token's module: SoftHSM2's, or on PostgreSQL the p11-kit client reaching it.
        module = self.kms.db.module if self.kms.db else kmsenv.SOFTHSM_MODULE
        self.assertIn(module, loaded, "the direct get opened the token")
        self.assertFalse([f for f in served if f == module or "softhsm" in f], served)
        if re.search(r"file=libcrypto\.so\S* \[0\];\s+needed by " + re.escape(KMSCTL), direct.err):
            self.skipTest("this kmsctl links libcrypto at start (a sanitized or non-x86-64 build)")
        self.assertTrue([f for f in loaded if "libcrypto" in f], "the direct get used OpenSSL")
        self.assertFalse([f for f in served if "libcrypto" in f or "libpq" in f], served)

    @file_store_only("bench_fill_vault fills a vault file")
    def test_a_list_longer_than_one_reply_comes_through_the_agent_in_pages(self):
        # An agent's reply holds at most 64 MiB: `audit list` asks for 10,000 records at a time,
        # each page older than the last, and prints them as one list.
        fill = os.path.join(os.path.dirname(KMSCTL), "bench", "bench_fill_vault")
        if not os.access(fill, os.X_OK):
            self.skipTest(f"{fill} is not built")
        self.kms.init()
        env = self.kms.base_env()
        with open(self.kms.pin_file) as f:
            env["KMSCTL_PIN"] = f.read().strip()
        r = subprocess.run([fill, self.kms.vault, "25000"], env=env, capture_output=True,
                           text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        info = self.start_agent()
        lists = "SELECT count(*) FROM audit_log WHERE action = 'audit.list'"
        before, listed = self.kms.sql("SELECT max(seq) FROM audit_log")[0][0], self.kms.sql(lists)
        r, _ = self.client_pid("audit", "list", "--limit", "22000", "--json", sock=info["socket"])
        self.assertEqual(r.rc, 0, r.show())
        seqs = [x["seq"] for x in json.loads(r.out)["items"]]
        self.assertEqual(len(seqs), 22000)
        # Newest first, no record twice, none skipped: from the newest the first page saw down.
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] - 22000, -1)))
        self.assertGreaterEqual(seqs[0], before)
        pages = self.kms.sql(lists)[0][0] - listed[0][0]
        self.assertEqual(pages, 3)  # 10,000 + 10,000 + 2,001, each request audited
        # Each page's record says which page it was: the first has no bound, the next ones
        # start below the last record of the page before. The last asks for one record more
        # than is shown: whether the limit cut the listing (its `next`).
        params = [json.loads(p) for (p,) in self.kms.sql(
            "SELECT params FROM audit_log WHERE action = 'audit.list' ORDER BY seq DESC LIMIT 3")]
        params.reverse()
        self.assertEqual([(p["limit"], p.get("before_seq")) for p in params],
                         [(10000, None), (10000, seqs[9999]), (2001, seqs[19999])])
        r, _ = self.client_pid("audit", "list", "--limit", "5", sock=info["socket"])
        self.assertEqual(len(r.out.splitlines()), 6, r.show())  # the header and 5 records

    def test_every_served_command_group_runs_without_a_pin_and_each_operation_is_audited(self):
        self.kms.init()
        info = self.start_agent()
        sock, agent_pid = info["socket"], info["pid"]
        work = self.kms.path("work")
        os.mkdir(work, 0o700)
        with open(os.path.join(work, "plain.txt"), "wb") as f:
            f.write(b"agent plaintext \x00\x01\n")
        clients = []

        def run(*args, input=None):
            r, pid = self.client_pid(*args, sock=sock, cwd=work, input=input)
            clients.append(pid)
            if r.rc != 0:
                raise AssertionError("expected success through the agent:\n" + r.show(args))
            return r

        self.assertIn(self.kms.shown_vault, run("status").out)
        key = json.loads(run("key", "create", "--alias", "alias/agent-k", "--json").out)
        key_id = key["key_id"]
        self.assertIn("alias/agent-k", run("key", "list").out)
        run("key", "describe", "alias/agent-k")
        run("encrypt", "--key", "alias/agent-k", "--in", "plain.txt", "--out", "c1.txt")
        run("re-encrypt", "--to-key", "alias/agent-k", "--in", "c1.txt", "--out", "c2.txt")
        self.assertEqual(run("decrypt", "--in", "c2.txt").out, "agent plaintext \x00\x01\n")
        dk = json.loads(run("data-key", "generate", "--key", "alias/agent-k", "--json").out)
        self.assertEqual(dk["key_id"], key_id)
        self.assertTrue(dk["plaintext"] and dk["ciphertext_blob"])
        self.assertRegex(run("random", "--bytes", "16", "--format", "hex").out,
                         r"^[0-9a-f]{32}\s*$")
        run("file", "encrypt", "plain.txt", "--key", "alias/agent-k", "-o", "plain.kenc",
            "--no-progress")
        run("file", "decrypt", "plain.kenc", "-o", "back.txt", "--no-progress")
        with open(os.path.join(work, "back.txt"), "rb") as f:
            self.assertEqual(f.read(), b"agent plaintext \x00\x01\n")
        run("secret", "create", "app/all", "--value-stdin", input=b"first")
        run("secret", "put", "app/all", "--value-stdin", input=b"second")
        self.assertEqual(run("secret", "get", "app/all").out, "second")
        self.assertRegex(run("secret", "list").out, r"(?m)^app/all\s")
        run("secret", "describe", "app/all")
        run("secret", "versions", "app/all")
        run("secret", "set-rotation", "app/all", "--period", "30")
        run("secret", "delete", "app/all")
        run("secret", "restore", "app/all")
        run("audit", "list", "--limit", "3")
        self.assertIn("audit log OK", run("audit", "verify").out)
        self.assertEqual(self.agent_status(sock)["requests"], len(clients))

        log = self.kms.records()
        start = next(i for i, x in enumerate(log) if x["action"] == "agent.start")
        served = log[start + 1:]
        self.assertTrue(served)
        for rec in served:
            with self.subTest(seq=rec["seq"], action=rec["action"]):
                # A file operation's key use is `started`, and its end `ok` (FORMAT.md §8.1).
                started = rec["action"].startswith("file.") and rec["params"]["step"] == "start"
                self.assertEqual(rec["outcome"], "started" if started else "ok")
                self.assertEqual(rec["uid"], os.geteuid())
                self.assertEqual(rec["params"].get("agent", {}).get("pid"), agent_pid, rec)
                self.assertIn(rec["params"]["agent"].get("client_pid"), clients, rec)
        seen = {x["action"] for x in served}
        for action in ("vault.status", "key.create", "key.generate_data_key", "random.generate",
                       "secret.create", "secret.put", "secret.get", "secret.delete",
                       "secret.restore", "audit.verify"):
            self.assertIn(action, seen)
        self.assertIn(f"key/{key_id}", {x["resource"] for x in served})
        self.verify_ok()

    def test_commands_the_agent_does_not_serve_run_in_the_calling_process(self):
        self.kms.init()
        self.make_secret("app/ns", "not-served")
        info = self.start_agent()
        sock = info["socket"]
        backup = self.kms.path("b.db")
        local = [("secret", "rotate", "app/ns"), ("maintain", "--dry-run")]
        if not kmsenv.ON_POSTGRES:  # PostgreSQL's own tools back a database up
            local.insert(1, ("vault", "backup", backup))
        for args in local:
            with self.subTest(args=args):
                r = self.client(*args, sock=sock)
                self.assertError(r, 6, NO_PIN)
        self.assertFalse(os.path.exists(backup))
        self.assertEqual(self.agent_status(sock)["requests"], 0, "the agent ran one of them")
        # With a PIN they run here as they would without an agent.
        for args in local:
            with self.subTest(args=args, pin=True):
                r = self.client(*args, sock=sock, pin=True)
                self.assertOk(r)
        v = self.client("version", sock=sock)
        self.assertEqual((v.rc, v.err), (0, ""), v.show())
        self.assertRegex(v.out, r"^kmsctl \S+\n$")
        self.assertEqual(self.agent_status(sock)["requests"], 0)
        log = self.kms.records()
        start = next(i for i, x in enumerate(log) if x["action"] == "agent.start")
        after = log[start + 1:]
        self.assertIn("secret.rotate", {x["action"] for x in after})
        if not kmsenv.ON_POSTGRES:
            self.assertIn("vault.backup", {x["action"] for x in after})
        for rec in after:
            self.assertNotIn("agent", rec["params"], rec)
        self.verify_ok()

    def rotation_setup(self, names):
        """A vault with a secret per name, each rotated by ENV_HOOK; the hook's path."""
        self.kms.init()
        hook = self.kms.path("env-hook.sh")
        with open(hook, "w") as f:
            f.write(ENV_HOOK)
        os.chmod(hook, 0o700)
        for n in names:
            f = self.value_file("value-" + n, "before-" + n)
            self.kms.ok("secret", "create", n, "--value-file", f, "--rotation-command", hook)
        return hook

    def hook_env(self, name):
        """The environment the hook ran with for secret `name`, or None if it did not run."""
        try:
            with open(self.kms.path(f"env.{name}")) as f:
                return dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)
        except FileNotFoundError:
            return None

    @file_store_only("the vault is also named by a relative path")
    def test_secret_rotate_runs_in_the_calling_process_wherever_the_global_options_are(self):
        # The agent would run the hook with its own environment: what is served is decided from
        # the command as parsed, not from the words' places on the command line.
        v, pin = self.kms.vault, self.kms.pin_file
        spellings = {
            "rot-after": ("secret", "rotate", "rot-after", "--vault", v),
            "rot-between": ("secret", "--vault", v, "rotate", "rot-between"),
            "rot-before": ("--vault", v, "secret", "rotate", "rot-before"),
            "rot-between-eq": ("secret", f"--vault={v}", "rotate", "rot-between-eq"),
            "rot-before-eq": (f"--vault={v}", "secret", "rotate", "rot-before-eq"),
            "rot-relative": ("secret", "--vault", os.path.join("vault", "vault.db"), "rotate",
                             "rot-relative"),
            "rot-env-only": ("secret", "rotate", "rot-env-only"),
        }
        self.rotation_setup(spellings)
        sock = self.start_agent()["socket"]
        for name, args in spellings.items():
            with self.subTest(args=args):
                # Without a PIN it cannot run: the agent, which needs none, did not take it.
                r = self.client(*args, sock=sock)
                self.assertError(r, 6, NO_PIN)
                self.assertIsNone(self.hook_env(name), "the hook ran without a PIN")
                # With one it runs here, and its hook gets this process's environment.
                r = self.client(*args, sock=sock, pin=True, env={CALLER: name})
                self.assertOk(r)
                env = self.hook_env(name)
                self.assertIsNotNone(env, "the hook did not run")
                self.assertEqual(env.get(CALLER), name, "the hook did not run in the caller")
                self.assertNotIn(MARKER, env, "the hook ran in the agent")
                self.assertEqual(env.get("KMSCTL_AGENT_SOCK"), sock)
        # The PIN file named between the group and the verb, with no PIN in the environment.
        r = self.client("secret", "--pin-file", pin, "--vault", v, "rotate", "rot-after",
                        sock=sock, env={CALLER: "pin-flag"})
        self.assertOk(r)
        self.assertEqual(self.hook_env("rot-after").get(CALLER), "pin-flag")
        self.assertEqual(self.agent_status(sock)["requests"], 0, "the agent served a rotation")
        rotations = self.actions("secret.rotate")
        self.assertEqual(len(rotations), 5 * (len(spellings) + 1))
        for rec in rotations:
            self.assertNotIn("agent", rec["params"], rec)
        self.verify_ok()

    def test_maintain_runs_in_the_calling_process_wherever_the_global_options_are(self):
        self.kms.init()
        v = self.kms.vault
        sock = self.start_agent()["socket"]
        for args in (("maintain", "--dry-run", "--vault", v),
                     ("--vault", v, "maintain", "--dry-run"),
                     (f"--vault={v}", "maintain", "--dry-run"), ("maintain", "--vault", v)):
            with self.subTest(args=args):
                self.assertError(self.client(*args, sock=sock), 6, NO_PIN)
                self.assertOk(self.client(*args, sock=sock, pin=True))
        self.assertEqual(self.agent_status(sock)["requests"], 0)
        for rec in self.actions("vault.maintain"):
            self.assertNotIn("agent", rec["params"], rec)

    def test_commands_that_are_not_requests_run_in_the_calling_process_not_in_the_agent(self):
        # A rotation hook, maintain and vault administration are no requests an agent serves:
        # with an agent and no PIN they run here, where the PIN is missing.
        v = self.kms.vault
        self.rotation_setup(["raw"])
        sock = self.start_agent()["socket"]
        self.assertEqual(self.served_ok("secret", "get", "raw", sock=sock).out, "before-raw")
        for args in (("secret", "--vault", v, "rotate", "raw"), ("secret", "rotate", "raw"),
                     ("--vault", v, "secret", "rotate", "raw"),
                     ("secret", f"--vault={v}", "rotate", "raw"), ("maintain",),
                     ("--vault", v, "maintain"), ("vault", "backup", self.kms.path("b.db"))):
            with self.subTest(args=args):
                self.assertError(self.client(*args, sock=sock), 6, NO_PIN)
        self.assertIsNone(self.hook_env("raw"), "the agent ran the rotation hook")
        self.assertFalse(os.path.exists(self.kms.path("b.db")))
        self.assertEqual(self.agent_status(sock)["requests"], 1)
        self.assertEqual(self.actions("secret.rotate"), [])
        self.assertEqual(self.actions("vault.maintain"), [])

    def test_exec_has_the_agent_read_its_secrets_and_runs_the_command_itself(self):
        self.kms.init()
        self.make_secret("app/db", "exec-db-value")
        self.make_secret("app/big", "b" * 65536)  # more than a pipe holds: read while written
        info = self.start_agent()
        sock = info["socket"]
        marker = self.kms.path("ran")
        r, client = self.client_pid(
            "exec", "--secret", "app/db=DBPW", "--secret", "app/big", "--", "sh", "-c",
            f'printf "%s %s" "$DBPW" "${{#APP_BIG}}" > {marker}; echo "pid $$"; exit 7',
            sock=sock)
        self.assertEqual((r.rc, r.err), (7, ""), r.show())
        with open(marker) as f:
            self.assertEqual(f.read(), "exec-db-value 65536")
        # exec replaced the client: the command ran with the client's pid, not in the agent.
        self.assertEqual(r.out, f"pid {client}\n")
        self.assertTrue(is_running(info["pid"]))
        gets = [x for x in self.actions("secret.get") if x["params"].get("agent")]
        self.assertEqual([(x["params"]["name"], x["params"]["exec"]["env"]) for x in gets],
                         [("app/db", "DBPW"), ("app/big", "APP_BIG")])
        for x in gets:
            self.assertEqual(x["params"]["agent"], {"pid": info["pid"], "client_pid": client})
            self.assertEqual(x["params"]["exec"]["command"], "sh")
        self.verify_ok()

    def test_exec_of_a_missing_secret_through_the_agent_exits_3_and_runs_nothing(self):
        self.kms.init()
        self.make_secret("app/one", "one-value")
        info = self.start_agent()
        marker = self.kms.path("ran")
        r = self.client("exec", "--secret", "app/one", "--secret", "app/none", "--", "sh", "-c",
                        f"touch {marker}", sock=info["socket"])
        direct = self.kms.run("exec", "--secret", "app/one", "--secret", "app/none", "--", "sh",
                              "-c", f"touch {marker}")
        self.assertEqual((r.rc, r.out, r.err), (direct.rc, direct.out, direct.err))
        self.assertError(r, 3, "no secret app/none")
        self.assertFalse(os.path.exists(marker))
        failed = [x for x in self.actions("secret.get") if x["outcome"] != "ok"]
        self.assertEqual([bool(x["params"].get("agent")) for x in failed], [True, False])
        self.verify_ok()

    def test_with_no_agent_answering_a_command_runs_in_process_and_needs_the_pin_there(self):
        self.kms.init()
        self.make_secret("app/fb", "fallback-value")
        stale_dir = self.kms.path("stale")
        os.mkdir(stale_dir, 0o700)
        stale = os.path.join(stale_dir, "agent.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(stale)
        s.close()
        info = self.start_agent()
        stopped = info["socket"]
        self.kms.ok("agent", "stop", "--socket", stopped)
        self.wait_gone(info["pid"])
        for where in (self.kms.path("nowhere", "agent.sock"), stale, stopped, ""):
            with self.subTest(socket=where):
                r = self.client("secret", "get", "app/fb", sock=where)
                self.assertError(r, 6, NO_PIN)
                r = self.client("secret", "get", "app/fb", sock=where, pin=True)
                self.assertEqual((r.rc, r.out, r.err), (0, "fallback-value", ""), r.show())
        gets = self.actions("secret.get")
        self.assertEqual(len(gets), 4)
        for rec in gets:
            self.assertNotIn("agent", rec["params"])

    @file_store_only("the vault is also named by a relative path")
    def test_a_command_naming_another_vault_runs_in_process(self):
        self.kms.init()
        self.make_secret("app/v", "agents-vault")
        other = self.kms.path("other", "vault.db")
        self.kms.ok("init", env={"KMSCTL_VAULT": other})
        self.make_secret("app/v", "other-vault", vault=other)
        info = self.start_agent()
        sock = info["socket"]
        for how in (("--vault", other), ("--vault=" + other,), ()):
            env = {} if how else {"KMSCTL_VAULT": other}
            with self.subTest(how=how or "KMSCTL_VAULT"):
                r = self.client(*how, "secret", "get", "app/v", sock=sock, env=env)
                self.assertError(r, 6, NO_PIN)
                r = self.client(*how, "secret", "get", "app/v", sock=sock, env=env, pin=True)
                self.assertEqual((r.rc, r.out), (0, "other-vault"), r.show())
        self.assertEqual(self.agent_status(sock)["requests"], 0)
        # The agent's own vault, named explicitly (even by a relative path), is served.
        for how in (("--vault", self.kms.vault), ("--vault", os.path.join("vault", "vault.db"))):
            with self.subTest(how=how):
                r = self.client(*how, "secret", "get", "app/v", sock=sock)
                self.assertEqual((r.rc, r.out), (0, "agents-vault"), r.show())
        self.assertEqual(self.agent_status(sock)["requests"], 2)
        other_log = self.kms.records(env={"KMSCTL_VAULT": other})
        self.assertEqual(len([x for x in other_log if x["action"] == "secret.get"]), 3)
        for rec in other_log:
            self.assertNotIn("agent", rec["params"])

    def test_exit_codes_and_messages_pass_through_the_agent_unchanged(self):
        self.kms.init()
        self.make_secret("app/e", "v")
        info = self.start_agent()
        r = self.client("secret", "get", "nosuch", sock=info["socket"])
        self.assertError(r, 3, "no secret nosuch in this vault")
        self.assertTrue(r.err.startswith("kmsctl: error: no secret nosuch in this vault\n"), r.err)
        for args in (("secret", "get", "nosuch"), ("key", "describe", "alias/nosuch"),
                     ("secret", "get"), ("secret", "get", "app/e", "--bogus"),
                     ("decrypt", "--in", "missing.txt"), ("random", "--bytes", "0")):
            with self.subTest(args=args):
                via = self.client(*args, sock=info["socket"])
                direct = self.kms.run(*args)
                self.assertNotEqual(via.rc, 0, via.show(args))
                self.assertEqual((via.rc, via.out, via.err), (direct.rc, direct.out, direct.err),
                                 f"through the agent:\n{via.show(args)}\nin process:\n"
                                 f"{direct.show(args)}")
        failed = [x for x in self.actions("secret.get") if x["params"].get("agent")][0]
        self.assertEqual((failed["outcome"], failed["error_code"]), ("error", "not_found"))
        self.assertEqual(failed["params"]["agent"]["pid"], info["pid"])
        self.verify_ok()

    def test_relative_paths_resolve_against_the_clients_working_directory(self):
        self.kms.init()
        info = self.start_agent()
        sock = info["socket"]
        work = self.kms.path("client", "cwd")
        os.makedirs(work, 0o700)
        data = os.urandom(3000)
        with open(os.path.join(work, "in.bin"), "wb") as f:
            f.write(data)
        self.served_ok("key", "create", "--alias", "alias/rel", sock=sock)
        self.served_ok("file", "encrypt", "in.bin", "--key", "alias/rel", "-o", "out.kenc",
                       "--no-progress", sock=sock, cwd=work)
        self.assertTrue(os.path.isfile(os.path.join(work, "out.kenc")))
        self.assertFalse(os.path.exists("/out.kenc"), "written in the agent's directory")
        self.served_ok("file", "decrypt", "out.kenc", "-o", "back.bin", "--no-progress",
                       sock=sock, cwd=work)
        with open(os.path.join(work, "back.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        self.served_ok("encrypt", "--key", "alias/rel", "--in", "in.bin", "--out", "blob.txt",
                       sock=sock, cwd=work)
        self.served_ok("decrypt", "--in", "blob.txt", "--out", "plain.bin", sock=sock, cwd=work)
        with open(os.path.join(work, "plain.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        r = self.client("decrypt", "--in", "no-such.txt", sock=sock, cwd=work)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("no-such.txt", r.err)

    def test_standard_input_and_output_are_the_clients(self):
        self.kms.init()
        info = self.start_agent()
        sock = info["socket"]
        value = b"from the client's stdin \xc3\xa9 \t end"
        self.served_ok("secret", "create", "app/in", "--value-stdin", input=value, sock=sock)
        self.served_ok("secret", "put", "app/in", "--value-stdin", input=value + b"-2", sock=sock)
        self.assertEqual(self.kms.ok("secret", "get", "app/in").out,  # in process, with the PIN
                         (value + b"-2").decode())
        self.assertEqual(self.served_ok("secret", "get", "app/in", sock=sock).out,
                         (value + b"-2").decode())
        self.served_ok("key", "create", "--alias", "alias/io", sock=sock)
        blob = self.served_ok("encrypt", "--key", "alias/io", input=b"piped plaintext",
                              sock=sock).out
        self.assertTrue(blob.strip())
        back = self.served_ok("decrypt", input=blob.encode(), sock=sock)
        self.assertEqual(back.out, "piped plaintext")


class Ending(AgentTestCase):
    def stop_record(self):
        recs = self.actions("agent.stop")
        self.assertEqual(len(recs), 1, recs)
        return recs[0]

    def test_an_agent_idle_for_its_idle_timeout_stops_itself_and_records_why(self):
        self.kms.init()
        self.make_secret("app/idle", "v")
        info = self.start_agent("--idle-timeout", "2s")
        sock, pid = info["socket"], info["pid"]
        self.assertEqual(info["idle_timeout_s"], 2)
        # Requests keep it alive past its idle timeout...
        t0, served = time.monotonic(), 0
        while time.monotonic() - t0 < 3:
            self.served_ok("secret", "get", "app/idle", sock=sock)
            served += 1
            time.sleep(0.4)
        self.assertTrue(is_running(pid), "the agent stopped although it was not idle")
        # ...and without them it goes within a few seconds.
        self.wait_gone(pid, timeout=8)
        self.wait_for(lambda: not os.path.exists(os.path.dirname(sock)),
                      what="the socket directory going")
        rec = self.stop_record()
        self.assertEqual((rec["params"]["pid"], rec["params"]["reason"]), (pid, "idle"))
        self.assertEqual(rec["params"]["requests"], served)
        self.verify_ok()

    def test_an_idle_timeout_of_1s_stops_an_unused_agent(self):
        self.kms.init()
        info = self.start_agent("--idle-timeout", "1s")
        self.wait_gone(info["pid"], timeout=6)
        self.wait_for(lambda: self.agent_dirs() == [], what="the socket directory going")
        rec = self.stop_record()
        self.assertEqual((rec["params"]["reason"], rec["params"]["requests"]), ("idle", 0))

    def test_an_agent_stops_at_its_max_lifetime_even_when_busy(self):
        self.kms.init()
        self.make_secret("app/life", "v")
        info = self.start_agent("--max-lifetime", "2s", "--idle-timeout", "1h")
        sock, pid = info["socket"], info["pid"]
        t0 = time.monotonic()
        while is_running(pid) and time.monotonic() - t0 < 10:
            self.client("secret", "get", "app/life", sock=sock)
            time.sleep(0.2)
        self.assertFalse(is_running(pid), "the agent outlived its max lifetime")
        self.wait_for(lambda: not os.path.exists(os.path.dirname(sock)),
                      what="the socket directory going")
        rec = self.stop_record()
        self.assertEqual((rec["params"]["pid"], rec["params"]["reason"]), (pid, "max lifetime"))
        self.verify_ok()

    def test_sigterm_stops_the_agent_and_is_recorded_as_signal_15(self):
        self.kms.init()
        self.make_secret("app/term", "v")
        info = self.start_agent()
        sock, pid = info["socket"], info["pid"]
        self.served_ok("secret", "get", "app/term", sock=sock)
        os.kill(pid, signal.SIGTERM)
        self.wait_gone(pid)
        self.wait_for(lambda: not os.path.exists(os.path.dirname(sock)),
                      what="the socket directory going")
        rec = self.stop_record()
        self.assertEqual((rec["params"]["pid"], rec["params"]["reason"], rec["params"]["requests"]),
                         (pid, "signal 15", 1))
        self.verify_ok()

    @file_store_only("a file renamed over the vault")
    def test_a_vault_replaced_by_rename_stops_the_agent_and_the_new_vault_verifies(self):
        self.kms.init()
        self.make_secret("app/r", "replaced-value")
        info = self.start_agent()
        sock, pid = info["socket"], info["pid"]
        self.served_ok("secret", "get", "app/r", sock=sock)
        backup = self.kms.path("backup.db")
        self.kms.ok("vault", "backup", backup)
        # The live file goes aside; restore writes a new one and renames it into place.
        os.rename(self.kms.vault, self.kms.vault + ".aside")
        self.kms.ok("vault", "restore", backup)
        self.assertNotEqual(os.stat(self.kms.vault).st_ino,
                            os.stat(self.kms.vault + ".aside").st_ino)
        r = self.client("secret", "get", "app/r", sock=sock)
        self.assertError(r, 6, "was replaced or removed after the agent opened it",
                         self.kms.vault)
        self.wait_gone(pid)
        self.wait_for(lambda: not os.path.exists(os.path.dirname(sock)),
                      what="the socket directory going")
        self.verify_ok()
        self.assertEqual(self.kms.ok("secret", "get", "app/r").out, "replaced-value")
        self.verify_ok()


    @file_store_only("vault backup and restore of a file")
    def test_vault_restore_force_under_a_running_agent_is_served_from_the_restored_vault(self):
        # A restore onto the vault rewrites the file in place (the same inode): the agent goes
        # on, and serves what the backup holds.
        self.kms.init()
        self.make_secret("app/rf", "value-in-the-backup")
        info = self.start_agent()
        sock = info["socket"]
        backup = self.kms.path("backup.db")
        self.kms.ok("vault", "backup", backup)
        f = self.value_file("later", "value-after-the-backup")
        self.served_ok("secret", "put", "app/rf", "--value-file", f, sock=sock)
        self.assertEqual(self.served_ok("secret", "get", "app/rf", sock=sock).out,
                         "value-after-the-backup")
        self.kms.ok("vault", "restore", backup, "--force")
        self.assertEqual(self.served_ok("secret", "get", "app/rf", sock=sock).out,
                         "value-in-the-backup")
        self.assertTrue(is_running(info["pid"]))
        self.verify_ok()


class Concurrency(AgentTestCase):
    def test_4_clients_x_10_gets_in_parallel_through_one_agent_all_succeed(self):
        self.kms.init()
        self.make_secret("app/par", "parallel-value-31")
        info = self.start_agent()
        sock = info["socket"]

        def worker(_):
            return [self.client("secret", "get", "app/par", sock=sock) for _ in range(10)]

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = [r for batch in pool.map(worker, range(4)) for r in batch]
        self.assertEqual(len(results), 40)
        bad = [r for r in results if (r.rc, r.out, r.err) != (0, "parallel-value-31", "")]
        self.assertEqual(bad, [], "\n".join(r.show() for r in bad[:3]))
        self.assertEqual(self.agent_status(sock)["requests"], 40)
        gets = [x for x in self.actions("secret.get") if x["params"].get("agent")]
        self.assertEqual(len(gets), 40)
        self.assertTrue(all(x["params"]["agent"]["pid"] == info["pid"] for x in gets))
        rep = self.verify_ok()
        self.assertGreaterEqual(rep["records"], 42)

    def test_direct_puts_interleaved_with_served_gets_all_succeed_and_the_log_verifies(self):
        self.kms.init()
        self.make_secret("app/mix", "put-value-0")
        info = self.start_agent()
        sock = info["socket"]
        values = [f"put-value-{i}" for i in range(1, 11)]
        files = [self.value_file(f"put-{i}", v) for i, v in enumerate(values, 1)]

        def putter():
            # In process, with the PIN and without the agent.
            return [self.kms.run("secret", "put", "app/mix", "--value-file", f) for f in files]

        def getter(_):
            return [self.client("secret", "get", "app/mix", sock=sock) for _ in range(10)]

        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            puts = pool.submit(putter)
            gets = list(pool.map(getter, range(2)))
            puts = puts.result()
        bad_puts = [r for r in puts if r.rc != 0]
        self.assertEqual(bad_puts, [], "\n".join(r.show() for r in bad_puts[:3]))
        got = [r for batch in gets for r in batch]
        bad = [r for r in got if r.rc != 0 or r.out not in ["put-value-0"] + values]
        self.assertEqual(bad, [], "\n".join(r.show() for r in bad[:3]))
        self.assertEqual(self.served_ok("secret", "get", "app/mix", sock=sock).out, values[-1])
        self.verify_ok()
        log = self.kms.records()
        self.assertEqual(len([x for x in log if x["action"] == "secret.put"]), 10)
        self.assertEqual(len([x for x in log if x["action"] == "secret.get"
                              and x["params"].get("agent")]), 21)


@unittest.skipUnless(IS_ROOT, "needs root to run processes as another user")
class OtherUsers(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.nobody = as_nobody()
        if self.nobody is None:
            self.skipTest("neither setpriv nor runuser is installed")
        # The test's directory is root's alone; others may pass through it, not list it.
        os.chmod(self.kms.root, 0o711)

    def nobody_env(self):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": "/"}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LD_LIBRARY_PATH"):
            if k in os.environ:
                e[k] = os.environ[k]
        return e

    def run_as_nobody(self, argv, env=None):
        e = self.nobody_env()
        if env:
            e.update(env)
        p = subprocess.run(self.nobody + argv, stdin=subprocess.DEVNULL, capture_output=True,
                           env=e, cwd="/", timeout=120, start_new_session=True)
        return Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))

    def shared_agent(self):
        """An agent of root at a socket others can reach (a misconfiguration): its directory
        made 0755 and the socket 0666 after it started."""
        self.kms.init()
        self.make_secret("app/mine", "roots-only-value")
        d = self.kms.path("shared")
        os.mkdir(d, 0o700)
        path = os.path.join(d, "agent.sock")
        info = self.start_agent("--socket", path)
        os.chmod(d, 0o755)
        os.chmod(path, 0o666)
        return info, path

    def assert_denied_once(self, log):
        denied = [x for x in log if x["outcome"] == "denied"]
        self.assertEqual(len(denied), 1, denied)
        self.assertEqual((denied[0]["action"], denied[0]["uid"]), ("vault.status", NOBODY))
        self.assertEqual((denied[0]["params"]["rule"], denied[0]["params"]["channel"]),
                         ("not-owner", "agent"))

    def test_a_kmsctl_client_of_another_uid_never_uses_the_agent(self):
        probe = self.run_as_nobody([KMSCTL, "version"])
        if probe.rc != 0:
            self.skipTest(f"uid {NOBODY} cannot run {KMSCTL} (is its directory closed to "
                          f"others?):\n{probe.show()}")
        info, path = self.shared_agent()
        r = self.run_as_nobody([KMSCTL, "secret", "get", "app/mine"],
                               env={"KMSCTL_AGENT_SOCK": path, "KMSCTL_VAULT": self.kms.vault})
        # The socket's directory is not the stranger's: its kmsctl does not even connect, and
        # the command runs in its own process, where it has neither the vault nor the PIN.
        self.assertEqual(r.rc, 6, r.show())
        self.assertNotIn("roots-only-value", r.out + r.err)
        self.assertTrue(is_running(info["pid"]), "a stranger's attempt stopped the agent")
        self.assertEqual(self.served_ok("secret", "get", "app/mine", sock=path).out,
                         "roots-only-value")
        log = self.kms.records()
        self.assertEqual([x for x in log if x["action"] == "agent.connect"], [],
                         "the stranger's kmsctl connected")
        self.assertEqual([x["uid"] for x in log if x["action"] == "secret.get"], [0])
        self.verify_ok()
        # What the agent answers a stranger that does connect: the next test.

    def test_an_agent_answers_a_request_of_another_uid_only_with_a_refusal(self):
        # kmsctl itself does not use a socket in another user's directory, and refuses an agent
        # of another uid (the next test); a bare socket client shows what the agent answers:
        # the request is authorised for its caller, who is not the vault's owner.
        probe = self.run_as_nobody([sys.executable, "-c", "pass"])
        if probe.rc != 0:
            self.skipTest(f"{sys.executable} cannot run as uid {NOBODY}:\n{probe.show()}")
        info, path = self.shared_agent()
        r = self.run_as_nobody([sys.executable, "-c", RAW_CLIENT, path, self.kms.vault, str(WIRE_VERSION)])
        self.assertEqual(r.rc, 0, r.show())
        reply = json.loads(r.out)
        self.assertEqual((reply["magic"], reply["status"], reply["code"]), ("KMAR", 1, 4), reply)
        self.assertIn("only the vault's owner (uid 0)", reply["text"])
        self.assertNotIn("roots-only-value", json.dumps(reply), "it told a stranger")
        self.assertTrue(is_running(info["pid"]))
        self.assert_denied_once(self.kms.records())
        self.assertEqual(self.agent_status(path)["requests"], 1)
        self.verify_ok()

    def test_a_client_refuses_an_agent_socket_of_another_uid_and_sends_it_nothing(self):
        self.kms.init()
        self.make_secret("app/x", "never-sent")
        d = self.kms.path("fake")
        os.mkdir(d, 0o755)
        os.chown(d, NOBODY, NOBODY)
        path = os.path.join(d, "agent.sock")
        fake = subprocess.Popen(self.nobody + [sys.executable, "-c", FAKE_AGENT, path],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.nobody_env(), cwd="/",
                                start_new_session=True)
        self.addCleanup(lambda: (fake.poll() is None and fake.kill(), fake.communicate()))
        ready = fake.stdout.readline()
        if ready != b"ready\n":
            fake.kill()
            _, err = fake.communicate()
            self.skipTest(f"the fake agent could not run as uid {NOBODY}: {err.decode()!r}")
        r = self.client("secret", "get", "app/x", sock=path)
        # The socket's directory is not this user's: it is not used at all, and the command
        # runs here, where it needs the PIN this client was not given.
        self.assertEqual(r.rc, 6, r.show())
        self.assertNotIn("never-sent", r.out + r.err)
        for args in (("agent", "status", "--socket", path), ("agent", "stop", "--socket", path)):
            with self.subTest(args=args):
                self.assertError(self.kms.run(*args), 4, "belongs to a process of uid 65534")
        fake.send_signal(signal.SIGTERM)
        out, err = fake.communicate(timeout=10)
        stats = json.loads(out.decode().splitlines()[-1])
        self.assertEqual(stats["uid"], NOBODY)
        self.assertGreaterEqual(stats["connections"], 1, "the client never even connected")
        self.assertEqual((stats["messages"], stats["bytes"], stats["fds"]), (0, 0, 0),
                         f"the client sent the stranger something: {stats}")
        self.assertEqual(self.actions("secret.get"), [], "the command ran anyway")


if __name__ == "__main__":
    kmsenv.main()
