"""No process of a rotation outlives kmsctl: a hook that leaves processes behind (one in a session
of its own made with setsid, with a child; one double-forked, whose parent exits at once; a plain
background job; one that ignores SIGTERM, SIGHUP and SIGINT) has every one of them killed when it
exits, at `create` (where they hold the pipe kmsctl reads the new value from) and at the other
steps (where they hold kmsctl's stderr), and when it runs past KMSCTL_HOOK_TIMEOUT, in
`secret rotate` and in `maintain`. A hook that exits 0 so still succeeds; one that times out is a
failed step, recorded, and the next rotation resumes it."""

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import FAILED, KMSCTL, Result, SecretsTestCase, main

MARKER = "KMS_E2E_HOOK_DESCENDANT"

# At the step named in ./at, starts processes meant to outlive it, each of which appends its pid
# to ./pids; then hangs if ./mode says so, else exits 0. At other steps it does nothing.
HOOK = r"""#!/bin/sh
dir=$(dirname "$0")
[ "$(cat "$dir/at")" = "$KMSCTL_ROTATION_STEP" ] || exit 0
pids="$dir/pids"
setsid sh -c 'echo $$ >> "$0"; sleep 300 & echo $! >> "$0"; wait' "$pids" &
( sh -c 'echo $$ >> "$0"; exec sleep 300' "$pids" & )
sleep 300 &
echo $! >> "$pids"
sh -c 'trap "" TERM HUP INT; echo $$ >> "$0"; while :; do sleep 1; done' "$pids" &
while [ "$(wc -l < "$pids")" -lt 5 ]; do sleep 0.02; done
[ "$(cat "$dir/mode")" = hang ] && sleep 300
exit 0
"""


def process_state(pid):
    """The state letter of process `pid` (R, S, Z...), or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def environ_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


class HookProcesses(SecretsTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.hook = cls.vault.path("hook.sh")
        with open(cls.hook, "w") as f:
            f.write(HOOK)
        os.chmod(cls.hook, 0o700)

    def setUp(self):
        self.marker = f"{MARKER}={self.vault.root}:{self.id()}"
        for name in ("at", "mode", "pids"):
            try:
                os.unlink(self.vault.path(name))
            except FileNotFoundError:
                pass
        self.addCleanup(self.kill_leftovers)

    # ---- processes ----
    def marked(self):
        """Running processes whose environment holds this test's marker."""
        needle = self.marker.encode()
        return [int(os.path.basename(d)) for d in glob.glob("/proc/[0-9]*")
                if needle in environ_of(os.path.basename(d))
                and process_state(os.path.basename(d)) not in (None, "Z", "X")]

    def recorded(self):
        try:
            with open(self.vault.path("pids")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def kill_leftovers(self):
        """After a failure: nothing this test started keeps running."""
        for pid in set(self.marked()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def assertNoneLeft(self, what):
        pids = self.recorded()
        self.assertEqual(len(pids), 5, f"the hook recorded {pids}")
        alive = {p: process_state(p) for p in pids
                 if process_state(p) not in (None, "Z", "X")
                 and self.marker.encode() in environ_of(p)}
        self.assertEqual(alive, {}, f"processes of the hook outlived kmsctl {what}")
        self.assertEqual(self.marked(), [], f"processes of the hook outlived kmsctl {what}")

    # ---- running kmsctl ----
    def run_hooked(self, at, mode, *args, hook_timeout, faketime=None, limit=60):
        """kmsctl ARGS with the marker and KMSCTL_HOOK_TIMEOUT in its environment; the result and
        how long it took. Its output goes to files, not pipes, so that what outlives it cannot
        hold the test; kmsctl itself must end within `limit` seconds."""
        with open(self.vault.path("at"), "w") as f:
            f.write(at)
        with open(self.vault.path("mode"), "w") as f:
            f.write(mode)
        v = self.vault
        name, value = self.marker.split("=", 1)
        env = {**v.base_env(faketime), name: value, "KMSCTL_HOOK_TIMEOUT": str(hook_timeout)}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t = time.monotonic()
            p = subprocess.Popen([KMSCTL, *args], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, env=env, start_new_session=True, cwd=v.root)
            try:
                p.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.fail(f"kmsctl {' '.join(args)} still ran after {limit} s (hook at {at}, "
                          f"{mode})")
            took = time.monotonic() - t
            out.seek(0)
            err.seek(0)
            return Result.of(list(args), p.returncode, out.read(), err.read()), took

    def test_a_hook_that_exits_has_every_process_it_left_killed(self):
        for at in ("create", "set"):
            with self.subTest(at=at):
                self.setUp()
                name = f"hp/exits-{at}"
                self.create(name, b"exits-v1", "--rotation-command", self.hook)
                r, took = self.run_hooked(at, "exit", "secret", "rotate", name, "--json",
                                          hook_timeout=30)
                self.assertNoneLeft(f"(hook exited at {at})")
                self.assertEqual(r.rc, 0, repr(r))
                self.assertLess(took, 20, "kmsctl waited for the hook's leftovers")
                self.assertEqual(r.json()["steps"], ["create", "set", "test", "finish"])
                self.assertEqual(self.stages(name), {"current": 2, "previous": 1, "pending": None})
                self.assertEqual(self.describe(name)["rotation"]["status"], "succeeded")

    def test_a_hook_that_times_out_has_every_process_killed_and_its_step_fails_until_retried(self):
        v = self.vault
        for at in ("create", "test"):
            with self.subTest(at=at):
                self.setUp()
                name = f"hp/hangs-{at}"
                self.create(name, b"hangs-v1", "--rotation-command", self.hook)
                before = v.audit_count()
                r, took = self.run_hooked(at, "hang", "secret", "rotate", name, hook_timeout=3)
                self.assertNoneLeft(f"(hook timed out at {at})")
                self.assertLess(took, 40)
                self.assertEqual(r.rc, FAILED, repr(r))
                self.assertIn(f"failed at step {at}", r.err)
                self.assertIn("ran longer than 3 s and was killed (KMSCTL_HOOK_TIMEOUT)", r.err)
                d = self.describe(name)
                self.assertEqual(d["stages"], {"current": 1, "previous": None,
                                               "pending": None if at == "create" else 2})
                self.assertEqual(d["rotation"]["status"], "failed")
                self.assertIn(f"step {at} failed: ran longer than 3 s", d["rotation"]["last_error"])
                failed = [x for x in v.audit_rows(before) if x["outcome"] == "error"]
                self.assertEqual([(x["action"], x["params"]["step"], x["error_code"])
                                  for x in failed], [("secret.rotate", at, "failed")])
                self.assertIn("ran longer than 3 s", failed[0]["params"]["failure"])

                # The next rotation resumes (or, after create, starts again) and finishes.
                with open(v.path("at"), "w") as f:
                    f.write("none")
                rot = v.json("secret", "rotate", name, "--json")
                self.assertEqual((rot["resumed"], rot["version"]), (at != "create", 2))
                self.assertEqual(self.stages(name), {"current": 2, "previous": 1, "pending": None})
                self.assertEqual(self.describe(name)["rotation"]["last_error"], None)

    def test_maintain_kills_what_the_hooks_of_due_rotations_leave(self):
        v = self.vault
        self.create("hp/due-exits", b"due-v1", "--rotation-period", "1d",
                    "--rotation-command", self.hook)
        r, took = self.run_hooked("set", "exit", "maintain", "--json", hook_timeout=30,
                                  faketime="+2d")
        self.assertNoneLeft("(maintain, hook exited)")
        self.assertEqual(r.rc, 0, repr(r))
        self.assertLess(took, 20)
        self.assertEqual(r.json()["secrets_rotated"], [{"name": "hp/due-exits", "version": 2}])

        v.ok("secret", "set-rotation", "hp/due-exits", "--off")
        self.setUp()
        self.create("hp/due-hangs", b"due-v1", "--rotation-period", "1d",
                    "--rotation-command", self.hook)
        r, took = self.run_hooked("set", "hang", "maintain", "--json", hook_timeout=3,
                                  faketime="+2d")
        self.assertNoneLeft("(maintain, hook timed out)")
        self.assertEqual(r.rc, FAILED, repr(r))
        self.assertEqual([x["name"] for x in r.json()["secrets_failed"]], ["hp/due-hangs"])
        self.assertEqual(self.describe("hp/due-hangs")["stages"]["pending"], 2)


if __name__ == "__main__":
    main()
