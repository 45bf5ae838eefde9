"""Hygiene of a kmsctl process and of what it takes and shows.

The process (docs/ARCHITECTURE.md §4.7): a running kmsctl cannot leave a core file and is not
dumpable, so another process of the same user can neither ptrace it nor read its memory through
/proc. Checked on a live kmsctl process, held open while it waits for its PIN on a FIFO.

Its input and output: PIN files that only their owner can read, a PIN that leaves kmsctl's
environment block, limits on what a command accepts, usage errors that never repeat a value, and
text output that no stored name can turn into a forged line or a terminal escape sequence. Each
of these tests checks the exit code and the message, that no PIN or secret value appears where
it should not, and that nothing in the vault was lost (the audit log still verifies)."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KMSCTL, KmsTestCase, file_mode

NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def wait_for_fifo_open(pid, timeout=30):
    """Waits until process `pid` blocks opening a FIFO (for reading, until a writer comes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/wchan") as f:
                if f.read().strip() == "wait_for_partner":
                    return True
        except (FileNotFoundError, PermissionError):
            pass
        time.sleep(0.05)
    return False


class ProcessHygiene(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="kmsctl-hygiene-")
        os.chmod(self.dir, 0o755)  # the FIFO must be reachable by the unprivileged user
        self.fifo = os.path.join(self.dir, "pin")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.dir], check=False)
        # A PIN file only its reader may open (kmsctl refuses one that others can read or write):
        # the unprivileged user's, when it is the one that reads it; root may open it anyway.
        os.mkfifo(self.fifo, 0o600)
        if os.geteuid() == 0:
            os.chown(self.fifo, NOBODY, NOBODY)
        # kmsctl looks for the vault before it reads the PIN; an empty file is enough for that.
        open(os.path.join(self.dir, "vault.db"), "w").close()

    def start(self, argv, uid=None):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.dir}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        pre = (lambda: (os.setgid(NOBODY), os.setuid(uid))) if uid is not None else None
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, preexec_fn=pre, cwd=self.dir)
        self.addCleanup(self.finish, p)
        return p

    def finish(self, p):
        if p.poll() is None:
            # A writer that closes at once: kmsctl reads an empty PIN and exits. ENXIO: no
            # reader is left (an earlier writer already released this process too).
            try:
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
        for stream in (p.stdout, p.stderr):
            stream.close()

    def kmsctl_waiting_for_pin(self, uid=None):
        binary = KMSCTL
        if uid is not None:
            # The build tree may sit in a directory the unprivileged user cannot enter.
            binary = os.path.join(self.dir, "kmsctl")
            shutil.copy(KMSCTL, binary)
            os.chmod(binary, 0o755)
        p = self.start([binary, "status", "--vault", os.path.join(self.dir, "vault.db"),
                        "--pin-file", self.fifo], uid=uid)
        self.assertTrue(wait_for_fifo_open(p.pid),
                        "kmsctl did not open the PIN FIFO")
        return p

    def test_a_running_kmsctl_has_a_zero_core_file_limit(self):
        p = self.kmsctl_waiting_for_pin()
        with open(f"/proc/{p.pid}/limits") as f:
            line = next(l for l in f if l.startswith("Max core file size"))
        self.assertEqual(line.split()[4:6], ["0", "0"], line)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run processes as another user")
    def test_a_running_kmsctl_is_not_dumpable(self):
        # The kernel makes /proc/PID of a non-dumpable process owned by root, whoever runs it;
        # an ordinary process of the same user keeps its own uid there (the control).
        control = self.start(["cat", self.fifo], uid=NOBODY)
        self.assertTrue(wait_for_fifo_open(control.pid))
        self.assertEqual(os.stat(f"/proc/{control.pid}/mem").st_uid, NOBODY)
        p = self.kmsctl_waiting_for_pin(uid=NOBODY)
        with open(f"/proc/{p.pid}/status") as f:
            uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
        self.assertEqual(uids, [str(NOBODY)] * 4, "kmsctl runs as nobody...")
        self.assertEqual(os.stat(f"/proc/{p.pid}/mem").st_uid, 0, "...but is not dumpable")
        self.assertEqual(os.stat(f"/proc/{p.pid}/environ").st_uid, 0)



class InputTestCase(KmsTestCase):
    def assertNothingLeaked(self, r, *secrets):
        for s in (self.kms.pin, *secrets):
            self.assertNotIn(s, r.out + r.err, f"{s!r} is in the output:\n{r.show()}")

    def assertVaultIntact(self):
        r = self.kms.run("audit", "verify")
        self.assertOk(r)
        self.assertIn("audit log OK", r.out)


class PinFileMode(InputTestCase):
    def test_a_pin_file_other_users_can_read_or_write_is_refused_with_exit_6(self):
        self.kms.init()
        pin = self.kms.pin_file
        before = self.kms.audit_count()
        for mode, what in ((0o644, "readable"), (0o640, "readable"), (0o604, "readable"),
                           (0o660, "readable"), (0o620, "writable"), (0o602, "writable")):
            os.chmod(pin, mode)
            for how in ("env", "flag"):
                with self.subTest(mode=oct(mode), how=how):
                    if how == "env":
                        r = self.kms.run("status")
                    else:
                        r = self.kms.run("--pin-file", pin, "status",
                                         unset=("KMSCTL_PIN_FILE",))
                    self.assertError(
                        r, 6, f"kmsctl: error: the PIN file {pin} is {what} by other users "
                              f"(mode {mode:04o})\nhint: chmod 600 {pin}\n")
                    self.assertNothingLeaked(r)
        self.assertEqual(file_mode(pin), 0o602, "kmsctl must not change the file's mode")
        self.assertEqual(self.kms.audit_count(), before, "the vault was opened without a PIN")
        # Its owner's alone (read-only, or with execute bits that let no one read it): accepted.
        for mode in (0o600, 0o400, 0o711):
            os.chmod(pin, mode)
            with self.subTest(mode=oct(mode)):
                self.assertOk(self.kms.run("status"))
        self.assertVaultIntact()

    def test_a_systemd_credential_with_group_bits_is_accepted_only_in_its_directory(self):
        # systemd may give a service read access to a credential by an ACL entry, which stat
        # shows as group bits (0440), in $CREDENTIALS_DIRECTORY, a directory of the service's.
        self.kms.init()
        creds = self.kms.path("credentials")
        os.mkdir(creds, 0o500)
        pin = os.path.join(creds, "pin")
        os.chmod(creds, 0o700)
        shutil.copy(self.kms.pin_file, pin)
        os.chmod(pin, 0o440)
        os.chmod(creds, 0o500)
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": pin, "CREDENTIALS_DIRECTORY": creds})
        self.assertOk(r)
        # The same file without the credentials directory, or in a directory others may write,
        # is refused.
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": pin})
        self.assertError(r, 6, "readable by other users (mode 0440)")
        os.chmod(creds, 0o777)
        self.addCleanup(os.chmod, creds, 0o700)
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": pin, "CREDENTIALS_DIRECTORY": creds})
        self.assertError(r, 6, "readable by other users (mode 0440)")

    def test_init_refuses_a_pin_file_others_can_read_before_it_creates_anything(self):
        os.chmod(self.kms.pin_file, 0o644)
        r = self.kms.run("init")
        self.assertError(r, 6, "readable by other users (mode 0644)",
                         f"chmod 600 {self.kms.pin_file}")
        self.assertNothingLeaked(r)
        self.assertFalse(os.path.exists(self.kms.vault))
        self.assertFalse(os.path.exists(self.kms.token_dir))

    def test_a_new_pin_file_others_can_read_is_refused_and_the_pin_stays(self):
        self.kms.init()
        new_pin = "e2e-New-Pin-0ddba11"
        new_file = self.kms.write_secret_file("new-pin", new_pin)
        os.chmod(new_file, 0o644)
        for args, env in ((("vault", "change-pin", "--new-pin-file", new_file), None),
                          (("vault", "change-pin"), {"KMSCTL_NEW_PIN_FILE": new_file})):
            with self.subTest(args=args):
                r = self.kms.run(*args, env=env)
                self.assertError(r, 6, f"the new PIN file {new_file} is readable by other users "
                                       "(mode 0644)", f"hint: chmod 600 {new_file}")
                self.assertNothingLeaked(r, new_pin)
        # Nothing changed: the old PIN still opens the token, the new one does not.
        self.assertOk(self.kms.run("status"))
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": self.kms.write_secret_file(
            "new-pin-private", new_pin)})
        self.assertError(r, 6, "CKR_PIN_INCORRECT")
        self.assertVaultIntact()

    def test_a_pin_from_a_pipe_is_accepted(self):
        # `--pin-file <(pass show kms)`: a pipe is the reader's alone (mode 0600).
        self.kms.init()
        rfd, wfd = os.pipe()
        os.write(wfd, (self.kms.pin + "\n").encode())
        os.close(wfd)
        env = self.kms.base_env()
        del env["KMSCTL_PIN_FILE"]
        try:
            p = subprocess.run([KMSCTL, "--pin-file", f"/dev/fd/{rfd}", "status"],
                               stdin=subprocess.DEVNULL, capture_output=True, env=env,
                               pass_fds=(rfd,), timeout=120, cwd=self.kms.root)
        finally:
            os.close(rfd)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn(self.kms.pin.encode(), p.stdout + p.stderr)


class WrongPin(InputTestCase):
    def test_the_wrong_pin_hint_says_what_softhsm2_does_and_that_is_what_it_does(self):
        self.kms.init()
        wrong = "e2e-Wrong-Pin-5eed"
        wrong_file = self.kms.write_secret_file("wrong-pin", wrong)
        before = self.kms.audit_count()
        for _ in range(12):
            r = self.kms.run("status", env={"KMSCTL_PIN_FILE": wrong_file})
            self.assertError(r, 6, "CKR_PIN_INCORRECT")
            hint = r.err.split("hint: ", 1)[1]
            self.assertIn("SoftHSM2 counts no wrong PINs and never locks", hint)
            self.assertIn("a hardware token may lock after a few", hint)
            self.assertNotIn("lock the token", hint)
            self.assertNothingLeaked(r, wrong)
        # Twelve wrong PINs in a row, and the token is not locked: the right PIN still opens it.
        self.assertOk(self.kms.run("status"))
        self.assertEqual(self.kms.audit_count(), before + 1, "a wrong PIN opens no vault")
        self.assertVaultIntact()


def environ_of(pid):
    """The environment block of process `pid`, as /proc shows it (kmsctl is not dumpable: only
    root may read it)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read()


@unittest.skipUnless(IS_ROOT, "a non-dumpable process's /proc/PID/environ is root's to read")
class PinLeavesTheEnvironment(InputTestCase):
    def start(self, argv, env):
        p = subprocess.Popen([KMSCTL, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd=self.kms.root,
                             start_new_session=True)

        def finish():
            if p.poll() is None:
                p.kill()
            p.communicate()
        self.addCleanup(finish)
        return p

    def test_a_running_agent_has_no_kmsctl_pin_in_its_environment_block(self):
        self.kms.init()
        env = self.kms.base_env()
        del env["KMSCTL_PIN_FILE"]
        env["KMSCTL_PIN"] = self.kms.pin
        sock = self.kms.path("agent", "agent.sock")
        os.mkdir(os.path.dirname(sock), 0o700)
        p = self.start(["agent", "start", "--foreground", "--json", "--socket", sock], env)
        line = p.stdout.readline().decode()
        text = line
        while not text.rstrip().endswith("}"):
            line = p.stdout.readline().decode()
            self.assertNotEqual(line, "", "the agent exited before it printed its JSON")
            text += line
        self.assertEqual(json.loads(text)["pid"], p.pid)
        block = environ_of(p.pid)
        self.assertIn(b"KMSCTL_VAULT=" + self.kms.vault.encode(), block, "not its environment?")
        self.assertNotIn(self.kms.pin.encode(), block)
        # It serves (it did read the PIN), and prints the PIN nowhere.
        r = self.kms.run("status", unset=("KMSCTL_PIN_FILE",), env={"KMSCTL_AGENT_SOCK": sock})
        self.assertOk(r)
        self.assertNothingLeaked(r)
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn(self.kms.pin.encode(), out + err)
        self.assertVaultIntact()

    def test_pins_that_kmsctl_does_not_read_leave_its_environment_block_too(self):
        # --pin-file wins over KMSCTL_PIN, and status reads no new PIN: both values are wiped all
        # the same, while kmsctl waits for its PIN file (a FIFO).
        self.kms.init()
        new_pin = "e2e-New-Pin-feedface"
        fifo = self.kms.path("pin-fifo")
        os.mkfifo(fifo, 0o600)
        env = self.kms.base_env()
        env.update({"KMSCTL_PIN_FILE": fifo, "KMSCTL_PIN": self.kms.pin, "KMSCTL_NEW_PIN": new_pin})
        p = self.start(["status"], env)
        self.assertTrue(wait_for_fifo_open(p.pid), "kmsctl did not open its PIN FIFO")
        block = environ_of(p.pid)
        self.assertIn(b"KMSCTL_PIN_FILE=" + fifo.encode(), block, "not its environment?")
        self.assertNotIn(self.kms.pin.encode(), block)
        self.assertNotIn(new_pin.encode(), block)
        with open(fifo, "w") as f:
            f.write(self.kms.pin + "\n")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn(self.kms.pin.encode(), out + err)
        self.assertNotIn(new_pin.encode(), out + err)
        self.assertVaultIntact()


class ContextLimit(InputTestCase):
    LIMIT = 64 * 1024
    # One pair k=V encodes as 4 (count) + 4 + 1 + 4 + len(V) bytes.
    AT_LIMIT = "k=" + "v" * (LIMIT - 13)
    OVER = "k=" + "v" * (LIMIT - 12)

    def setUp(self):
        super().setUp()
        self.kms.init()
        self.kms.ok("key", "create", "--alias", "alias/app")
        self.plain = self.kms.path("plain")
        with open(self.plain, "w") as f:
            f.write("e2e-plaintext-c0ffee")

    def assertOverLimit(self, r, before):
        self.assertError(r, 2, "the encryption context is 65537 bytes encoded, over the limit "
                               "of 65536 bytes (64 KiB)")
        self.assertNothingLeaked(r, "e2e-plaintext-c0ffee")
        self.assertEqual(self.kms.audit_count(), before, "refused before the vault opened")

    def test_encrypt_data_key_and_re_encrypt_cap_the_context_at_64_KiB_like_file_encrypt(self):
        blob = self.kms.path("at-limit.blob")
        self.kms.ok("encrypt", "--key", "alias/app", "--context", self.AT_LIMIT,
                    "--in", self.plain, "--out", blob)
        small = self.kms.path("small.blob")
        self.kms.ok("encrypt", "--key", "alias/app", "--context", "a=b", "--in", self.plain,
                    "--out", small)
        before = self.kms.audit_count()
        over_out = self.kms.path("over.blob")
        for args in (("encrypt", "--key", "alias/app", "--context", self.OVER, "--in", self.plain,
                      "--out", over_out),
                     ("data-key", "generate", "--key", "alias/app", "--context", self.OVER),
                     ("re-encrypt", "--to-key", "alias/app", "--context", "a=b",
                      "--to-context", self.OVER, "--in", small, "--out", over_out),
                     ("file", "encrypt", "--key", "alias/app", "--context", self.OVER,
                      self.plain)):
            with self.subTest(command=" ".join(args[:2])):
                self.assertOverLimit(self.kms.run(*args), before)
        self.assertFalse(os.path.exists(over_out))
        self.assertFalse(os.path.exists(self.plain + ".kenc"))
        # What was written within the limit still opens, and so do the files at the limit.
        r = self.kms.run("decrypt", "--context", self.AT_LIMIT, "--in", blob)
        self.assertEqual((r.rc, r.out), (0, "e2e-plaintext-c0ffee"), r.show())
        self.kms.ok("file", "encrypt", "--key", "alias/app", "--context", self.AT_LIMIT,
                    self.plain)
        r = self.kms.run("file", "decrypt", "--context", self.AT_LIMIT, "-o", "-",
                         self.plain + ".kenc")
        self.assertEqual((r.rc, r.out), (0, "e2e-plaintext-c0ffee"), r.show())
        self.assertVaultIntact()


class UsageErrors(InputTestCase):
    SECRET = "hunter2-e2e-7f3a9c"  # what a user might type where a value does not belong

    def assertUsage(self, r, *needles):
        self.assertError(r, 2, *needles)
        self.assertNothingLeaked(r, self.SECRET)

    def test_an_unknown_option_is_named_and_its_value_never_repeated(self):
        self.kms.init()
        before = self.kms.audit_count()
        m = self.SECRET
        for args, option, command in (
                (("secret", "create", "app/db", "--value", m), "--value", "secret create"),
                (("secret", "create", "app/db", "--value=" + m), "--value", "secret create"),
                (("secret", "create", "--value", m, "app/db"), "--value", "secret create"),
                (("secret", "put", "app/db", "--password", m), "--password", "secret put"),
                (("status", "--pin", m), "--pin", "status"),
                (("--pin", m, "status"), "--pin", "status"),
                (("status", "--pin=" + m), "--pin", "status"),
                (("status", "-p" + m), "-p", "status"),
                (("init", "--pin", m), "--pin", "init"),
                (("vault", "change-pin", "--new-pin", m), "--new-pin", "vault change-pin"),
                (("key", "--value=" + m), "--value", "key")):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertUsage(r, f"kmsctl: error: `kmsctl {command}` has no option {option}\n",
                                 "--value-stdin", "--value-file FILE", "--pin-file FILE",
                                 "KMSCTL_PIN_FILE", "KMSCTL_PIN or the prompt",
                                 f"`kmsctl {command} --help`")
        self.assertEqual(self.kms.audit_count(), before, "a usage error opens no vault")
        self.assertVaultIntact()

    def test_extra_arguments_and_refused_values_are_counted_or_described_never_repeated(self):
        self.kms.init()
        self.kms.ok("key", "create", "--alias", "alias/app")
        before = self.kms.audit_count()
        m = self.SECRET
        for args, needle in (
                (("secret", "put", "app/db", m), "`kmsctl secret put` was given 1 argument too many"),
                (("key", "describe", "alias/app", m, m + "-2"),
                 "`kmsctl key describe` was given 2 arguments too many"),
                (("encrypt", "--key", "alias/app", m), "`kmsctl encrypt` was given 1 argument"),
                (("secret", "get", "app/db", "--stage", m),
                 "--stage: the value given is not valid (expected {current,previous,pending})"),
                (("audit", "list", "--limit", m),
                 "--limit: the value given is not valid (expected INT in [1 - 1000000])"),
                (("status", "--json=" + m), "--json is a flag: give it without a value")):
            with self.subTest(args=args):
                self.assertUsage(self.kms.run(*args), needle)
        self.assertEqual(self.kms.audit_count(), before, "a usage error opens no vault")
        # An option of the command, given before its name: said so, with no hint about values.
        r = self.kms.run("--json", "status")
        self.assertUsage(r, "kmsctl: error: --json must follow `kmsctl status`\n",
                         "hint: run `kmsctl status --help`")
        # A word where a command belongs is still named: it is a command, not a value.
        r = self.kms.run("key", "lsit")
        self.assertError(r, 2, "unknown command or argument: lsit", "`kmsctl key --help`")
        self.assertVaultIntact()


class TextOutput(InputTestCase):
    ESC = "\x1b"
    # A description that tries to add a row to a listing, recolour the terminal, set its title,
    # and hide behind DEL, a C1 CSI and a right-to-left override.
    FORGED_ROW = "\n    99  2026-11-28T10:58:41.158Z  root        key.delete              key/x  ok"
    DESCRIPTION = ("app data" + FORGED_ROW + "\r\x1b[31mRED\x1b[0m\x1b]0;owned\x07\x7f"
                   "\u009b2J\u202egnp.exe\\tail")
    SHOWN = ("app data\\n    99  2026-11-28T10:58:41.158Z  root        key.delete"
             "              key/x  ok\\r\\x1b[31mRED\\x1b[0m\\x1b]0;owned\\x07\\x7f"
             "\\u009b2J\\u202egnp.exe\\\\tail")
    ROW = re.compile(r"^ *\d+  \d{4}-\d\d-\d\dT\S+  ")

    def assertClean(self, r, lines=None):
        """One line per row: no control character but the newline ending each, no ESC."""
        self.assertOk(r)
        for stream in (r.out, r.err):
            self.assertNotIn(self.ESC, stream, r.show())
            self.assertIsNone(re.search("[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f\u202e]",
                                        stream), r.show())
        if lines is not None:
            self.assertEqual(len(r.out.splitlines()), lines, r.show())
        self.assertNothingLeaked(r)

    def test_no_stored_text_can_forge_a_row_or_reach_the_terminal(self):
        kms = self.kms
        kms.init()
        key_id = kms.ok("key", "create", "--alias", "alias/app", "--description",
                        self.DESCRIPTION, "--tag", "owner=\x1b[2Jroot\nx").out.strip()
        name = kms.path("report\n    98  2026-11-28T10:58:41.158Z  root  file.decrypt  x  ok"
                        "\x1b[8m.txt")
        with open(name, "w") as f:
            f.write("e2e-file-body-1234")
        kms.ok("file", "encrypt", "--key", "alias/app", "--context", "ticket=\x1b[5m42\n", name)
        kms.ok("secret", "create", "app/db", "--generate", "--description", self.DESCRIPTION)

        r = kms.run("key", "describe", "alias/app")
        self.assertClean(r, lines=11)
        self.assertIn(f"description      {self.SHOWN}\n", r.out)
        self.assertIn("tag              owner=\\x1b[2Jroot\\nx\n", r.out)
        self.assertClean(kms.run("key", "list"), lines=3)  # and alias/kmsctl/secrets
        r = kms.run("secret", "describe", "app/db")
        self.assertClean(r)
        self.assertIn(f"description      {self.SHOWN}\n", r.out)
        r = kms.run("file", "inspect", name + ".kenc")
        self.assertClean(r)
        self.assertIn('context      {"ticket":"\\x1b[5m42\\n"}\n', r.out)

        r = kms.run("audit", "list")
        self.assertClean(r)
        rows = r.out.splitlines()[1:]
        self.assertTrue(rows and all(self.ROW.match(row) for row in rows), r.out)
        self.assertEqual([int(row.split()[0]) for row in rows],
                         list(range(len(rows), 0, -1)), "one row a record, no forged one")
        enc = [row for row in rows if " file.encrypt " in row]
        self.assertEqual(len(enc), 2, r.out)  # started, then ok
        # The table shortens a long resource around an ellipsis; --output wide shows it whole.
        r = kms.run("audit", "list", "--output", "wide")
        self.assertClean(r)
        rows = r.out.splitlines()[1:]
        self.assertTrue(rows and all(self.ROW.match(row) for row in rows), r.out)
        enc = [row for row in rows if " file.encrypt " in row]
        self.assertEqual(len(enc), 2, r.out)
        for row in enc:
            self.assertIn("report\\n    98  2026-11-28T10:58:41.158Z  root  file.decrypt  x  ok"
                          "\\x1b[8m.txt", row)

        # JSON keeps every byte as it was given (its own escapes are JSON's): nothing lost.
        j = kms.json("key", "describe", key_id, "--json")
        self.assertEqual(j["description"], self.DESCRIPTION)
        self.assertEqual(j["tags"], {"owner": "\x1b[2Jroot\nx"})
        log = kms.records()
        self.assertIn({"file": name, "context": {"ticket": "\x1b[5m42\n"}},
                      [{k: x["params"].get(k) for k in ("file", "context")} for x in log
                       if x["action"] == "file.encrypt"])
        self.assertVaultIntact()

    def test_an_error_message_naming_what_the_user_gave_stays_on_its_line(self):
        self.kms.init()
        before = self.kms.audit_count()
        r = self.kms.run("key", "describe", "\x1b[31mkey\nhint: run rm -rf /")
        self.assertError(r, 3)
        self.assertEqual(len(r.err.splitlines()), 2, r.show())
        self.assertNotIn(self.ESC, r.err)
        self.assertIn("\\x1b[31mkey\\nhint: run rm -rf /", r.err)
        self.assertEqual(self.kms.audit_count(), before + 1, "a key.describe record, refused")
        r = self.kms.run("key", "create", "--alias", "alias/\x1b[31m")
        self.assertError(r, 2, "\\x1b[31m")
        self.assertEqual(len(r.err.splitlines()), 2, r.show())
        self.assertNotIn(self.ESC, r.err)
        self.assertVaultIntact()


def raw(b):
    """An argv word or file name of arbitrary bytes (Python hands it to kmsctl byte for byte)."""
    return os.fsdecode(b)


class InvalidUtf8(InputTestCase):
    HINT = "give text as UTF-8 (only file names may be other bytes)"

    def setUp(self):
        super().setUp()
        self.kms.init()
        self.key_id = self.kms.ok("key", "create", "--alias", "alias/app",
                                  "--description", "first").out.strip()
        self.plain = self.kms.path("plain")
        with open(self.plain, "w") as f:
            f.write("e2e-plaintext-beef")

    def assertNoCrash(self, r):
        for what in ("json.exception", "type_error", "terminate", "Aborted"):
            self.assertNotIn(what, r.err, r.show())

    def test_text_that_is_not_utf8_is_a_usage_error_naming_the_option_and_byte(self):
        before = self.kms.audit_count()
        for args, needle in (
                (("key", "create", "--description", raw(b"caf\xe9")),
                 "--description: not UTF-8 text (byte 0xe9 at offset 3)"),
                (("key", "describe", raw(b"alias/\xff")), "key: not UTF-8 text (byte 0xff at offset 6)"),
                (("key", "tag", "alias/app", raw(b"owner=\xc3(")),
                 "tags: not UTF-8 text (byte 0xc3 at offset 6)"),
                (("encrypt", "--key", "alias/app", "--context", raw(b"k=\xed\xa0\x80"), "--in",
                  self.plain), "--context: not UTF-8 text (byte 0xed at offset 2)"),
                (("encrypt", "--key", raw(b"\xc0\xaf"), "--in", self.plain),
                 "--key: not UTF-8 text (byte 0xc0 at offset 0)"),
                (("file", "encrypt", "--key", "alias/app", "--context", raw(b"\xff=v"),
                  self.plain), "--context: not UTF-8 text (byte 0xff at offset 0)"),
                (("secret", "create", "app/db", "--generate", "--description", raw(b"\x80")),
                 "--description: not UTF-8 text (byte 0x80 at offset 0)"),
                (("audit", "list", "--resource", raw(b"key/\xfe")),
                 "--resource: not UTF-8 text (byte 0xfe at offset 4)")):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertError(r, 2, needle, self.HINT)
                self.assertNoCrash(r)
                self.assertNothingLeaked(r, "e2e-plaintext-beef")
        # Refused before the vault was opened, as every usage error: no record, nothing written.
        self.assertEqual(self.kms.audit_count(), before)
        self.assertFalse(os.path.exists(self.plain + ".kenc"))
        self.assertEqual(self.kms.json("key", "describe", "alias/app", "--json")["tags"], {})
        self.assertVaultIntact()

    def test_a_description_that_is_not_utf8_written_into_the_file_is_refused_without_a_crash(self):
        # kmsctl never stores such a description: only a hand in the file does, and the row's
        # MAC then refuses it, cleanly, for listing and describing alike.
        self.kms.ok("key", "create", "--description", "second")
        [(before,)] = self.kms.sql("SELECT description FROM keys WHERE id = ?", (self.key_id,))
        self.kms.sql("UPDATE keys SET description = CAST(X'636166e90a1b5b326a' AS TEXT) "
                     "WHERE id = ?", (self.key_id,))
        for args in (("key", "list", "--json"), ("key", "list"), ("key", "describe", self.key_id)):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertNoCrash(r)
                self.assertError(r, 5, self.key_id, "altered outside kmsctl")
                self.assertNotIn("\x1b", r.out + r.err)
        self.kms.sql("UPDATE keys SET description = ? WHERE id = ?", (before, self.key_id))
        self.assertOk(self.kms.run("key", "list", "--json"))
        self.assertVaultIntact()

    def test_a_file_name_that_is_not_utf8_encrypts_and_its_record_carries_it_escaped(self):
        name = raw(os.fsencode(self.kms.path("")) + b"caf\xe9 \xff.txt")
        with open(name, "w") as f:
            f.write("e2e-plaintext-beef")
        r = self.kms.run("file", "encrypt", "--key", "alias/app", "--json", name)
        self.assertOk(r)
        self.assertNoCrash(r)
        out = json.loads(r.out)
        self.assertEqual(out["input"], name.encode("utf-8", "surrogateescape").decode(
            "utf-8", "replace"), "JSON output: U+FFFD for each byte that is not UTF-8")
        self.assertTrue(os.path.exists(name + ".kenc"))
        r = self.kms.run("file", "decrypt", "-o", "-", name + ".kenc")
        self.assertEqual((r.rc, r.out), (0, "e2e-plaintext-beef"), r.show())
        escaped = self.kms.path("caf\\xe9 \\xff.txt")
        records = [x for x in self.kms.records() if x["action"].startswith("file.")]
        self.assertEqual([(x["action"], x["outcome"], x["resource"], x["params"]["file"])
                          for x in records],
                         [("file.encrypt", "started", "file/" + escaped, escaped),
                          ("file.encrypt", "ok", "file/" + escaped, escaped),
                          ("file.decrypt", "started", "file/" + escaped + ".kenc",
                           escaped + ".kenc"),
                          ("file.decrypt", "ok", "file/" + escaped + ".kenc", escaped + ".kenc")])
        # A request refused inside the vault is recorded all the same, its name escaped too.
        bad = raw(os.fsencode(self.kms.path("")) + b"bad\xff.kenc")
        with open(bad, "wb") as f:
            f.write(b"KENC" + b"\0" * 60)
        r = self.kms.run("file", "decrypt", "-o", "-", bad)
        self.assertError(r, 5)
        self.assertNoCrash(r)
        last = [x for x in self.kms.records() if x["action"] == "file.decrypt"][-1]
        self.assertEqual((last["outcome"], last["params"]["file"]),
                         ("error", self.kms.path("bad\\xff.kenc")))
        r = self.kms.run("audit", "list", "--output", "wide")
        self.assertOk(r)
        self.assertIn("file/" + self.kms.path("caf\\\\xe9 \\\\xff.txt"), r.out)
        self.assertOk(self.kms.run("audit", "export", "-o", self.kms.path("log.jsonl")))
        self.assertVaultIntact()


if __name__ == "__main__":
    kmsenv.main()
