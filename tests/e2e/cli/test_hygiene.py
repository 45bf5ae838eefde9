"""Process hygiene (docs/ARCHITECTURE.md §4.7): a running kmsctl cannot leave a core file and is
not dumpable, so another process of the same user can neither ptrace it nor read its memory
through /proc. Checked on a live kmsctl process, held open while it waits for its PIN on a FIFO."""

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import KMSCTL

NOBODY = 65534


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


class Hygiene(unittest.TestCase):
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
