"""kmsctl maintain with the clock moved forward by faketime(1): rotates exactly the keys whose
rotation period has elapsed since their last rotation (enabled ones only), purges exactly the keys
whose deletion date has passed (aliases removed, audit history kept), --dry-run changes nothing,
a second run does nothing, and `status` counts what is overdue."""

import os
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import SharedVaultTestCase, NOT_FOUND, days, ts


class Maintain(SharedVaultTestCase):
    """One timeline on one vault, in order: now, +8 days, +31 days, +91 days, +182 days."""

    def status_overdue(self, when):
        """The key counts of `overdue` (the secret counts are tested in tests/e2e/secrets)."""
        overdue = self.vault.json("status", "--json", faketime=when)["overdue"]
        return {k: n for k, n in overdue.items() if k.startswith("key_")}

    def describe(self, key, when):
        return self.vault.json("key", "describe", key, "--json", faketime=when)

    def maintain(self, when, *args):
        r, rec = self.audited("maintain", "--json", *args, action="vault.maintain",
                              faketime=when)
        rep = r.json()
        self.assertEqual(rep["dry_run"], "--dry-run" in args)
        self.assertEqual(rec["params"]["dry_run"], "--dry-run" in args)
        rotated = {x["key_id"]: x["version"] for x in rep["rotated"]}
        self.assertEqual(len(rotated), len(rep["rotated"]), "a key is rotated once per run")
        if "--dry-run" not in args:
            self.assertEqual({x["key_id"]: x["version"] for x in rec["params"].get("rotated", [])},
                             rotated)
            self.assertEqual(sorted(rec["params"]["deleted"]), sorted(rep["deleted"]))
        return rotated, sorted(rep["deleted"])

    def versions(self, key, when):
        return [v["version"] for v in self.describe(key, when)["versions"]]

    def test_maintain_rotates_exactly_the_due_keys_and_purges_exactly_the_expired_ones(self):
        v = self.vault
        r90 = v.create_key("--rotation-period", "90d", "--alias", "alias/r90")
        r365 = v.create_key("--rotation-period", "365d")
        norot = v.create_key()
        dis30 = v.create_key("--rotation-period", "30d")
        v.ok("key", "disable", dis30)
        d7 = v.create_key("--alias", "alias/d7")
        v.ok("key", "alias", "create", "alias/d7-second", d7)
        d7_blob = v.encrypt(d7, b"purged with its key")
        d30 = v.create_key("--rotation-period", "7d")
        v.ok("key", "schedule-deletion", d7, "--pending-days", "7")
        v.ok("key", "schedule-deletion", d30, "--pending-days", "30")
        r90_blob = v.encrypt("alias/r90", b"rotated underneath")
        all_keys = {"r90": r90, "r365": r365, "norot": norot, "dis30": dis30, "d7": d7,
                    "d30": d30}
        name = {k: n for n, k in all_keys.items()}

        def names(ids):
            return sorted(name.get(i, i) for i in ids)

        # Now: nothing is due.
        self.assertEqual(self.status_overdue(None), {"key_rotations": 0, "key_deletions": 0})
        r, _ = self.audited("maintain", action="vault.maintain")
        self.assertEqual(r.out, "nothing is due\n")

        # +8 days: d7's deletion date has passed; no rotation period has (d30's 7d period does
        # not count: it is pending deletion; dis30 is disabled).
        when = "+8d"
        self.assertEqual(self.status_overdue(when), {"key_rotations": 0, "key_deletions": 1})
        before = v.sql("SELECT * FROM keys ORDER BY id")
        rotated, deleted = self.maintain(when, "--dry-run")
        self.assertEqual((rotated, names(deleted)), ({}, ["d7"]))
        self.assertEqual(v.sql("SELECT * FROM keys ORDER BY id"), before,
                         "--dry-run changes nothing")
        r, _ = self.audited("maintain", "--dry-run", action="vault.maintain", faketime=when)
        self.assertEqual(r.out, f"would delete key {d7}\n")
        rotated, deleted = self.maintain(when)
        self.assertEqual((rotated, names(deleted)), ({}, ["d7"]))
        r = v.run("key", "describe", d7, faketime=when)
        self.assertError(r, NOT_FOUND, d7)
        r = v.run("decrypt", input=d7_blob, faketime=when)
        self.assertError(r, NOT_FOUND, d7)
        aliases = {a["alias"] for a in v.json("key", "alias", "list", "--json", faketime=when)["items"]}
        self.assertEqual(aliases, {"alias/r90"}, "the purged key's aliases are gone")
        for table in ("key_versions", "key_aliases", "key_tags"):
            self.assertEqual(v.sql(f"SELECT count(*) FROM {table} WHERE key_id = ?", (d7,)),
                             [(0,)], table)
        # The audit log keeps the purged key's history.
        history = [x["action"] for x in v.audit_rows() if x["resource"] == "key/" + d7]
        for action in ("key.create", "key.alias_create", "key.encrypt",
                       "key.schedule_deletion"):
            self.assertIn(action, history)
        self.assertEqual(self.maintain(when), ({}, []), "a second run does nothing")
        self.assertEqual(self.status_overdue(when), {"key_rotations": 0, "key_deletions": 0})

        # +91 days: r90 is due (and d30 expired on day 30); r365 is not; norot never; dis30 is
        # disabled.
        when = "+91d"
        self.assertEqual(self.status_overdue(when), {"key_rotations": 1, "key_deletions": 1})
        rotated, deleted = self.maintain(when, "--dry-run")
        self.assertEqual((names(rotated), rotated.get(r90), names(deleted)),
                         (["r90"], 2, ["d30"]))
        self.assertEqual(self.versions(r90, when), [1], "--dry-run rotates nothing")
        self.assertEqual(self.describe(d30, when)["state"], "PendingDeletion")
        rotated, deleted = self.maintain(when)
        self.assertEqual((names(rotated), rotated.get(r90), names(deleted)),
                         (["r90"], 2, ["d30"]))
        k = self.describe(r90, when)
        self.assertEqual((k["primary_version"], self.versions(r90, when)), (2, [1, 2]))
        self.assertGreater(ts(k["last_rotated"]), ts(k["created"]) + days(90))
        self.assertEqual(ts(k["next_rotation"]), ts(k["last_rotated"]) + days(90))
        for key in (r365, norot, dis30):
            self.assertEqual(self.versions(key, when), [1], name[key])
        self.assertEqual(self.describe(dis30, when)["state"], "Disabled")
        self.assertError(v.run("key", "describe", d30, faketime=when), NOT_FOUND, d30)
        self.assertEqual(v.decrypt(r90_blob), b"rotated underneath",
                         "the old version still decrypts")
        self.assertEqual(self.maintain(when), ({}, []), "a second run does nothing")
        self.assertEqual(self.status_overdue(when), {"key_rotations": 0, "key_deletions": 0})

        # +182 days: r90 is due again, 90 days after its last rotation (not its creation).
        when = "+182d"
        self.assertEqual(self.status_overdue(when), {"key_rotations": 1, "key_deletions": 0})
        rotated, deleted = self.maintain(when)
        self.assertEqual((rotated, deleted), ({r90: 3}, []))
        self.assertEqual(self.versions(r365, when), [1])
        self.assertEqual(self.maintain(when), ({}, []))

        rep = v.json("audit", "verify", "--json", faketime=when)
        self.assertIs(rep["ok"], True, rep)


class MaintainText(SharedVaultTestCase):
    def test_text_report_names_each_rotation(self):
        key = self.vault.create_key("--rotation-period", "7d")
        r, _ = self.audited("maintain", "--dry-run", action="vault.maintain", faketime="+400d")
        self.assertIn(f"would rotate key {key} to version 2\n", r.out)
        r, _ = self.audited("maintain", action="vault.maintain", faketime="+400d")
        self.assertIn(f"rotate key {key} to version 2\n", r.out)
        self.assertNotIn("would", r.out)


if __name__ == "__main__":
    kmsenv.main()
