"""Secret rotation: the four hook steps in order with the documented environment, stdin and fd 3;
stages after finish; each step is committed to the audit log before the next hook runs (read by
another program, and kept when the hook kills kmsctl); a hook failing at each step in turn leaves
`current` unchanged, is audited and shown by describe, and a retry resumes the same pending
version; the rotation lock; `get` during a rotation returns a whole value; rotation without a
hook; JSON secrets keep their other fields."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import (FAILED, HOST, NOT_FOUND, ORDER_HOOK, REFUSED, USAGE, SecretsTestCase, days,
                    main, read_seen, ts)

HOOK = r"""#!/bin/sh
# Records each call; fails at the step named in ./control ("sleep" sleeps at set instead).
dir=$(dirname "$0")
control=$(cat "$dir/control" 2>/dev/null)
{
  printf 'step=%s name=%s id=%s current=%s pending=%s argc=%s\n' "$KMSCTL_ROTATION_STEP" \
    "$KMSCTL_SECRET_NAME" "$KMSCTL_SECRET_ID" "$KMSCTL_CURRENT_VERSION_ID" \
    "$KMSCTL_PENDING_VERSION_ID" "$#"
  printf 'stdin=%s\n' "$(cat)"
  printf 'fd3=%s\n' "$(cat <&3)"
} >> "$dir/hook.log"
if [ "$control" = sleep ] && [ "$KMSCTL_ROTATION_STEP" = set ]; then
  : > "$dir/in-set"
  while [ ! -e "$dir/go" ]; do sleep 0.05; done
fi
[ "$control" = "$KMSCTL_ROTATION_STEP" ] && { echo "hook: failing at $control" >&2; exit 3; }
if [ "$KMSCTL_ROTATION_STEP" = create ] && [ -e "$dir/supply" ]; then cat "$dir/supply"; fi
exit 0
"""

class Rotation(SecretsTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        path = cls.vault.path("hook.sh")
        with open(path, "w") as f:
            f.write(HOOK)
        os.chmod(path, 0o700)
        cls.hook = path

    def setUp(self):
        for name in ("control", "hook.log", "supply", "in-set", "go", "order-fail", "order-kill"):
            try:
                os.unlink(self.vault.path(name))
            except FileNotFoundError:
                pass

    def control(self, text, name="control"):
        with open(self.vault.path(name), "w") as f:
            f.write(text)

    def rotate_records(self, name, after=0):
        return [(x["seq"], x["params"]["step"], x["outcome"]) for x in self.vault.audit_rows(after)
                if x["action"] == "secret.rotate" and x["resource"] == f"secret/{name}"]

    def hook_calls(self):
        try:
            with open(self.vault.path("hook.log")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        calls = []
        for i in range(0, len(lines), 3):
            head = dict(kv.split("=", 1) for kv in lines[i].split())
            head["stdin"] = lines[i + 1].split("=", 1)[1]
            head["fd3"] = lines[i + 2].split("=", 1)[1]
            calls.append(head)
        return calls

    def test_the_hook_runs_create_set_test_finish_with_ids_in_env_and_values_on_stdin_and_fd3(self):
        v = self.vault
        self.create("rot/steps", b"old-value-steps", "--rotation-command", self.hook)
        sid = self.describe("rot/steps")["secret_id"]
        before = v.audit_count()
        r = v.json("secret", "rotate", "rot/steps", "--json")
        self.assertEqual(r, {"name": "rot/steps", "version": 2, "previous_version": 1,
                             "resumed": False, "steps": ["create", "set", "test", "finish"]})
        new_value = self.get("rot/steps").decode()
        self.assertEqual(len(new_value), 32)
        calls = self.hook_calls()
        self.assertEqual([c["step"] for c in calls], ["create", "set", "test", "finish"])
        for c in calls:
            self.assertEqual((c["name"], c["id"], c["current"], c["pending"], c["argc"]),
                             ("rot/steps", sid, "1", "2", "0"))
            self.assertEqual(c["fd3"], "old-value-steps")
            self.assertEqual(c["stdin"], "" if c["step"] == "create" else new_value)
        self.assertEqual(self.stages("rot/steps"), {"current": 2, "previous": 1, "pending": None})
        self.assertEqual(self.get("rot/steps", "--stage", "previous"), b"old-value-steps")
        recs = [x for x in v.audit_rows(before) if x["action"] == "secret.rotate"]
        self.assertEqual([(x["action"], x["params"]["step"], x["outcome"]) for x in recs],
                         [("secret.rotate", s, "ok") for s in ("start", "create", "set", "test", "finish")])
        for x in recs:
            self.assertNotIn("old-value-steps", json.dumps(x))
            self.assertNotIn(new_value, json.dumps(x))
        d = self.describe("rot/steps")
        self.assertEqual((d["rotation"]["status"], d["rotation"]["last_error"]), ("succeeded", None))
        self.assertIsNotNone(d["rotation"]["last_rotated"])
        self.assertNotStored(b"old-value-steps", new_value.encode())

    def test_each_step_is_committed_before_the_next_hook_runs_and_seen_by_another_reader(self):
        v = self.vault
        name = "rot/order"
        hook = self.write_script("order.sh", ORDER_HOOK)
        self.create(name, b"order-v1", "--rotation-command", hook)
        steps = ("create", "set", "test", "finish")

        # A whole rotation: at each step the hook finds, through another connection to the vault
        # file, exactly the records of the steps before it, `start` first.
        before = v.audit_count()
        v.ok("secret", "rotate", name)
        recs = self.rotate_records(name, before)
        self.assertEqual([(st, o) for _, st, o in recs],
                         [(st, "ok") for st in ("start", *steps)])
        for i, step in enumerate(steps):
            with self.subTest(step=step):
                seen = [x for x in read_seen(v, step) if x[0] > before]
                self.assertEqual(seen, recs[:i + 1], f"what the hook saw at {step}")

        # A failed step is recorded before the retry starts, and the retry's `start` (resumed)
        # before its first hook.
        self.control("test", "order-fail")
        before = v.audit_count()
        self.assertEqual(v.run("secret", "rotate", name).rc, FAILED)
        os.unlink(v.path("order-fail"))
        failed = self.rotate_records(name, before)
        self.assertEqual([(st, o) for _, st, o in failed],
                         [("start", "ok"), ("create", "ok"), ("set", "ok"), ("test", "error")])
        mid = v.audit_count()
        r = v.json("secret", "rotate", name, "--json")
        self.assertEqual((r["resumed"], r["steps"]), (True, ["set", "test", "finish"]))
        resumed = self.rotate_records(name, mid)
        self.assertEqual(resumed[0][1:], ("start", "ok"))
        self.assertEqual([x for x in read_seen(v, "set") if x[0] > before],
                         failed + resumed[:1], "the failure and the new start, before `set`")
        self.assertEqual(v.audit_rows(mid)[0]["params"]["resumed"], True)

    def test_a_hook_that_kills_kmsctl_leaves_the_start_of_its_rotation_recorded(self):
        v = self.vault
        name = "rot/killed"
        hook = self.write_script("order.sh", ORDER_HOOK)
        self.create(name, b"killed-v1", "--rotation-command", hook)
        self.control("create", "order-kill")
        before = v.audit_count()
        r = v.run("secret", "rotate", name)
        self.assertEqual(r.rc, -9, f"kmsctl was not killed by its hook:\n{r!r}")
        os.unlink(v.path("order-kill"))
        # The hook saw the start record, and it is still there with kmsctl gone: it was
        # committed (and the anchor moved to it) before the hook was started.
        recs = self.rotate_records(name, before)
        self.assertEqual([(st, o) for _, st, o in recs], [("start", "ok")])
        self.assertEqual([x for x in read_seen(v, "create") if x[0] > before], recs)
        rec = v.audit_rows(before)[-1]
        self.assertEqual((rec["action"], rec["params"]["step"], rec["params"]["current_version"]),
                         ("secret.rotate", "start", 1))
        self.assertIn("audit log OK", v.ok("audit", "verify").out)
        self.assertEqual(self.stages(name), {"current": 1, "previous": None, "pending": None})
        # Nothing else was left behind: the lock went with the process, and a rotation runs.
        self.assertEqual(v.json("secret", "rotate", name, "--json")["steps"],
                         ["create", "set", "test", "finish"])
        self.assertNotEqual(self.get(name), b"killed-v1")

    def test_a_value_printed_by_the_hook_at_create_becomes_the_new_version(self):
        self.create("rot/supplied", b"before-supplied", "--rotation-command", self.hook)
        with open(self.vault.path("supply"), "w") as f:
            f.write("hook-made-value-77\n")
        self.vault.ok("secret", "rotate", "rot/supplied")
        self.assertEqual(self.get("rot/supplied"), b"hook-made-value-77", "one trailing newline dropped")

    def test_a_hook_failing_at_each_step_leaves_current_unchanged_and_a_retry_resumes(self):
        v = self.vault
        for step in ("create", "set", "test", "finish"):
            with self.subTest(step=step):
                self.setUp()
                name = f"rot/fail-{step}"
                self.create(name, f"old-{step}".encode(), "--rotation-command", self.hook)
                self.control(step)
                r = v.run("secret", "rotate", name)
                self.assertIn(f"hook: failing at {step}", r.err, "the hook's stderr is shown")
                r.err = "\n".join(l for l in r.err.splitlines() if not l.startswith("hook:"))
                self.assertError(r, FAILED, f"failed at step {step}", "current is still version 1",
                                 hint=f"secret rotate {name}")
                self.assertEqual(self.get(name), f"old-{step}".encode())
                d = self.describe(name)
                self.assertEqual(d["stages"]["current"], 1)
                self.assertEqual(d["stages"]["pending"], None if step == "create" else 2)
                self.assertEqual(d["rotation"]["status"], "failed")
                self.assertIn(f"step {step} failed: exited with status 3", d["rotation"]["last_error"])
                failures = [x for x in v.audit_rows() if x["resource"] == f"secret/{name}"
                            and x["outcome"] == "error"]
                self.assertEqual([(x["params"]["step"], x["error_code"]) for x in failures],
                                 [(step, "failed")])
                pending_value = (self.get(name, "--stage", "pending") if step != "create" else None)

                self.control("none")
                os.unlink(self.vault.path("hook.log"))
                r = v.json("secret", "rotate", name, "--json")
                self.assertEqual(r["resumed"], step != "create")
                self.assertEqual(r["version"], 2, "the same pending version is finished")
                self.assertEqual([c["step"] for c in self.hook_calls()],
                                 ["set", "test", "finish"] if step != "create"
                                 else ["create", "set", "test", "finish"])
                if pending_value is not None:
                    self.assertEqual(self.get(name), pending_value)
                self.assertEqual(self.stages(name), {"current": 2, "previous": 1, "pending": None})
                self.assertEqual(self.describe(name)["rotation"]["last_error"], None)

    def test_set_rotation_changes_period_and_hook_and_a_new_hook_resumes_the_pending_version(self):
        v = self.vault
        name = "rot/settings"
        self.create(name, b"settings-v1")
        created = self.describe(name)["created"]

        before = v.audit_count()
        rot = v.json("secret", "set-rotation", name, "--period", "30d", "--json")["rotation"]
        self.assertEqual((rot["period_days"], rot["command"]), (30, None))
        self.assertEqual(ts(rot["next_rotation"]) - ts(created), days(30))
        self.assertEqual(self.describe(name)["rotation"]["period_days"], 30, "stored")
        rec = v.audit_rows(before)[0]
        self.assertEqual((rec["action"], rec["resource"], rec["outcome"]),
                         ("secret.set_rotation", f"secret/{name}", "ok"))
        self.assertEqual(rec["params"], {"name": name, "rotation_period_days": 30,
                                         "host": HOST})

        # A hook that fails at set leaves version 2 pending ...
        v.ok("secret", "set-rotation", name, "--command", self.hook)
        rot = self.describe(name)["rotation"]
        self.assertEqual((rot["period_days"], rot["command"]), (30, self.hook), "the period is kept")
        self.assertEqual(v.audit_rows(before)[-2]["params"],
                         {"name": name, "rotation_command": True, "host": HOST})
        self.control("set")
        self.assertEqual(v.run("secret", "rotate", name).rc, FAILED)
        self.assertEqual(self.stages(name), {"current": 1, "previous": None, "pending": 2})

        # ... and the rotation resumes it with the hook that replaces the broken one.
        fixed = self.write_script("fixed.sh", '#!/bin/sh\necho "$KMSCTL_ROTATION_STEP" >> "$(dirname "$0")/fixed.log"\n')
        v.ok("secret", "set-rotation", name, "--command", fixed)
        r = v.json("secret", "rotate", name, "--json")
        self.assertEqual((r["resumed"], r["version"]), (True, 2))
        with open(v.path("fixed.log")) as f:
            self.assertEqual(f.read().split(), ["set", "test", "finish"])

        # --off and --no-command: no schedule, no hook; `secret rotate` still generates a value.
        rot = v.json("secret", "set-rotation", name, "--off", "--no-command", "--json")["rotation"]
        self.assertEqual((rot["period_days"], rot["command"], rot["next_rotation"]), (None, None, None))
        self.assertEqual(v.audit_rows(before)[-1]["params"],
                         {"name": name, "rotation_period_days": None, "rotation_command": False,
                          "host": HOST})
        self.assertEqual(v.json("secret", "rotate", name, "--json")["version"], 3)
        self.assertEqual(len(self.get(name)), 32)

    def test_set_rotation_refuses_bad_input_unknown_and_deleted_secrets(self):
        v = self.vault
        name = "rot/settings-bad"
        self.create(name, b"bad-v1", "--rotation-period", "10d")
        before = v.audit_count()
        for args, needle in (((), "needs --period, --off, --command or --no-command"),
                             (("--period", "0d"), "--period"), (("--period", "366d"), "--period"),
                             (("--command", ""), "--command is empty")):
            with self.subTest(args=args):
                self.assertError(v.run("secret", "set-rotation", name, *args), USAGE, needle)
        for args, needle in ((("--period", "5d", "--off"), "--period excludes --off"),
                             (("--command", "true", "--no-command"),
                              "--command excludes --no-command")):
            with self.subTest(args=args):
                self.assertError(v.run("secret", "set-rotation", name, *args), USAGE, needle)
        self.assertEqual(v.audit_count(), before, "refused before the vault is opened")
        self.assertEqual(self.describe(name)["rotation"]["period_days"], 10, "nothing changed")

        self.assertError(v.run("secret", "set-rotation", "rot/none", "--off"), NOT_FOUND, "rot/none")
        v.ok("secret", "delete", name, "--recovery-days", "7")
        r = v.run("secret", "set-rotation", name, "--period", "20d")
        self.assertError(r, REFUSED, "scheduled for deletion", hint=f"kmsctl secret restore {name}")
        self.assertEqual(v.audit_rows()[-1]["outcome"], "denied")
        v.ok("secret", "restore", name)
        self.assertEqual(self.describe(name)["rotation"]["period_days"], 10)

    def test_one_rotation_at_a_time_and_get_returns_a_whole_value_meanwhile(self):
        v = self.vault
        self.create("rot/lock", b"locked-old-value", "--rotation-command", self.hook)
        self.control("sleep")
        first = v.popen("secret", "rotate", "rot/lock")
        try:
            deadline = time.time() + 60
            while not os.path.exists(v.path("in-set")):
                self.assertIsNone(first.poll(), "the first rotation ended early")
                self.assertLess(time.time(), deadline, "the hook never reached set")
                time.sleep(0.05)
            r = v.run("secret", "rotate", "rot/lock")
            self.assertError(r, REFUSED, "already running")
            pending = self.get("rot/lock", "--stage", "pending")
            for _ in range(3):
                self.assertEqual(self.get("rot/lock"), b"locked-old-value")
        finally:
            open(v.path("go"), "w").close()
            out, err = first.communicate(timeout=120)
        self.assertEqual(first.returncode, 0, err)
        self.assertEqual(self.get("rot/lock"), pending)

    def test_a_hook_that_runs_too_long_is_killed_and_the_step_fails(self):
        v = self.vault
        self.create("rot/slow", b"slow-old-value", "--rotation-command", self.hook)
        self.control("sleep")  # waits at set for a file that never appears
        t = time.time()
        r = v.run("secret", "rotate", "rot/slow", env={"KMSCTL_HOOK_TIMEOUT": "1"})
        self.assertLess(time.time() - t, 30)
        self.assertEqual(r.rc, FAILED, r)
        self.assertIn("failed at step set", r.err)
        self.assertIn("was killed (KMSCTL_HOOK_TIMEOUT)", r.err)
        self.assertEqual(self.get("rot/slow"), b"slow-old-value")
        self.control("none")
        self.assertEqual(v.json("secret", "rotate", "rot/slow", "--json")["resumed"], True)

    def test_without_a_command_kmsctl_generates_and_a_json_secret_keeps_its_fields(self):
        v = self.vault
        v.ok("secret", "create", "rot/plain", "--generate", "--length", "16", "--charset", "hex")
        old = self.get("rot/plain")
        r = v.json("secret", "rotate", "rot/plain", "--json")
        self.assertEqual(r["steps"], ["create", "finish"])
        new = self.get("rot/plain")
        self.assertNotEqual(new, old)
        self.assertRegex(new.decode(), r"^[0-9a-f]{16}$", "the secret's own generator")
        doc = {"host": "h", "user": "app", "password": "old-pass-json"}
        self.create("rot/json", json.dumps(doc).encode())
        v.ok("secret", "rotate", "rot/json")
        got = json.loads(self.get("rot/json"))
        self.assertEqual({k: got[k] for k in ("host", "user")}, {"host": "h", "user": "app"})
        self.assertNotEqual(got["password"], "old-pass-json")
        self.assertEqual(len(got["password"]), 32)


if __name__ == "__main__":
    main()
