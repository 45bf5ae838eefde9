"""`kmsctl maintain` with the clock moved forward by faketime(1): runs exactly the secret
rotations that are due (with their hooks), purges exactly the deleted secrets past their recovery
window, reports a failing rotation with a non-zero exit, and `status` counts what is overdue;
each rotation it runs records its start before the first hook runs."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import FAILED, NOT_FOUND, ORDER_HOOK, REFUSED, SecretsTestCase, main, read_seen

HOOK = """#!/bin/sh
echo "$KMSCTL_ROTATION_STEP" >> "$(dirname "$0")/steps.log"
[ -e "$(dirname "$0")/fail" ] && [ "$KMSCTL_ROTATION_STEP" = test ] && exit 9
exit 0
"""


class Maintain(SecretsTestCase):

    def overdue(self, when):
        o = self.vault.json("status", "--json", faketime=when)["overdue"]
        return o["secret_rotations"], o["secret_deletions"]

    def maintain(self, when, *args, rc=0):
        r = self.vault.run("maintain", "--json", *args, faketime=when)
        self.assertEqual(r.rc, rc, repr(r))
        rep = r.json()
        return ({x["name"]: x["version"] for x in rep["secrets_rotated"]},
                sorted(rep["secrets_purged"]), [x["name"] for x in rep["secrets_failed"]])

    def current(self, name, when):
        return self.describe(name, faketime=when)["stages"]["current"]

    def test_maintain_rotates_due_secrets_and_purges_expired_ones(self):
        v = self.vault
        hook = self.write_script("hook.sh", HOOK)
        self.create("m/hooked", b"hooked-v1", "--rotation-period", "10d", "--rotation-command", hook)
        self.create("m/monthly", b"monthly-v1", "--rotation-period", "30d")
        self.create("m/never", b"never-v1")
        self.create("m/del7", b"del7-v1")
        self.create("m/del30", b"del30-v1", "--rotation-period", "1d")
        v.ok("secret", "delete", "m/del7", "--recovery-days", "7")
        v.ok("secret", "delete", "m/del30", "--recovery-days", "30")

        self.assertEqual(self.overdue(None), (0, 0))
        self.assertEqual(self.maintain(None), ({}, [], []))

        when = "+8d"  # del7's window has passed; del30 is deleted, so its 1d period does not count
        self.assertEqual(self.overdue(when), (0, 1))
        self.assertEqual(self.maintain(when, "--dry-run"), ({}, ["m/del7"], []))
        self.assertEqual(v.run("secret", "get", "m/del7", faketime=when).rc, REFUSED,
                         "--dry-run purges nothing")
        self.assertEqual(self.maintain(when), ({}, ["m/del7"], []))
        self.assertError(v.run("secret", "get", "m/del7", faketime=when), NOT_FOUND)
        self.assertError(v.run("secret", "get", "m/del30", faketime=when), REFUSED)
        self.assertEqual(self.overdue(when), (0, 0))

        when = "+11d"
        self.assertEqual(self.overdue(when), (1, 0))
        self.assertEqual(self.maintain(when), ({"m/hooked": 2}, [], []))
        with open(v.path("steps.log")) as f:
            self.assertEqual(f.read().split(), ["create", "set", "test", "finish"])
        self.assertEqual(self.maintain(when), ({}, [], []), "a second run does nothing")

        when = "+31d"  # hooked is due again (10d after +11d), monthly too, del30 expires
        self.assertEqual(self.overdue(when), (2, 1))
        open(v.path("fail"), "w").close()
        rotated, purged, failed = self.maintain(when, rc=FAILED)
        self.assertEqual((rotated, purged, failed), ({"m/monthly": 2}, ["m/del30"], ["m/hooked"]))
        self.assertEqual(self.current("m/hooked", when), 2, "the failed rotation changed nothing")
        self.assertEqual(self.describe("m/hooked", faketime=when)["rotation"]["status"], "failed")
        self.assertNotEqual(self.get("m/monthly", faketime=when), b"monthly-v1")
        self.assertEqual(self.get("m/never", faketime=when), b"never-v1")
        os.unlink(v.path("fail"))
        self.assertEqual(self.maintain(when, "--dry-run"), ({"m/hooked": 3}, [], []),
                         "--dry-run names the pending version the retry resumes")
        self.assertEqual(self.maintain(when), ({"m/hooked": 3}, [], []), "the retry resumes")
        self.assertEqual(self.overdue(when), (0, 0))
        actions = [(r["action"], r["outcome"]) for r in v.audit_rows()
                   if r["resource"] == "secret/m/del30"]
        self.assertIn(("secret.delete", "ok"), actions, "the purged secret's history is kept")


class MaintainOrder(SecretsTestCase):
    """A vault of its own: the rotation it makes due must not be due in the tests above."""

    def test_each_rotation_maintain_runs_is_recorded_as_started_before_its_hook(self):
        v = self.vault
        hook = self.write_script("order.sh", ORDER_HOOK)
        self.create("mo/hooked", b"mo-v1", "--rotation-period", "1d", "--rotation-command", hook)
        before = v.audit_count()
        r = v.run("maintain", "--json", faketime="+2d")
        self.assertEqual(r.rc, 0, repr(r))
        self.assertEqual(r.json()["secrets_rotated"], [{"name": "mo/hooked", "version": 2}])
        rows = v.audit_rows(before)
        self.assertEqual(rows[0]["action"], "vault.maintain")
        recs = [(x["seq"], x["params"]["step"], x["outcome"]) for x in rows
                if x["action"] == "secret.rotate"]
        self.assertEqual([st for _, st, _ in recs], ["start", "create", "set", "test", "finish"])
        for i, step in enumerate(("create", "set", "test", "finish")):
            with self.subTest(step=step):
                self.assertEqual([x for x in read_seen(v, step) if x[0] > before], recs[:i + 1])


if __name__ == "__main__":
    main()
