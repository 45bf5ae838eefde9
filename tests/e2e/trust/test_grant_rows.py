"""Attacks on grants (docs/POLICY.md §6) by someone who can write the vault file but has neither
the token nor the PIN: a grant is an authenticated row like a key (docs/ARCHITECTURE.md §4.9), so
a grant inserted, widened (operations, context, expiry, grantee) or un-revoked with sqlite3 is
refused when kmsctl reads it (exit 5, audited), and a genuine older copy of a grant put back (a
revoked grant made active again by replaying its row) or a grant deleted is found by
`audit verify`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/e2e/trust
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e
import kmsenv
from test_row_auth import ALTERED, INTEGRITY, KEY_COLUMNS, RowAttackCase

KEY_COLUMNS["grants"] = ("id",)


class GrantRows(RowAttackCase):
    def setUp(self):
        super().setUp()
        self.key = self.kms.ok("key", "create").out.strip()
        self.gid = self.kms.ok("grant", "create", "--key", self.key, "--grantee", "uid:4242",
                               "--operations", "Encrypt", "--context-subset", "tenant=t1",
                               "--expires", "1d").out.strip()
        self.label = f"grant (id {self.gid})"

    def assertGrantRefused(self, label, key=None):
        for args in (("grant", "list", "--key", key or self.key), ("grant", "list", "--all")):
            before = self.head()
            r = self.kms.run(*args)
            self.assertError(r, INTEGRITY, label, ALTERED)
            self.assertRefusalRecorded(before, "grant.list")
        self.assertRowRefusedByVerify(label)

    def test_a_grant_inserted_with_sqlite3_is_refused_and_found_by_verify(self):
        row = self.row("grants", id=self.gid)
        forged = dict(row, id="g-" + "ab" * 12, grantee_uid=31337, grantee="uid:31337",
                      operations="kms:Encrypt,kms:Decrypt")
        self.insert("grants", **forged)
        self.assertGrantRefused("grant (id g-" + "ab" * 12 + ")")

    def test_a_grant_widened_or_moved_to_another_key_is_refused(self):
        other = self.kms.ok("key", "create").out.strip()  # a grant moved to another key
        for change in ({"operations": "kms:Encrypt,kms:Decrypt"},
                       {"context_subset": bytes(4)},
                       {"expires_at": None},
                       {"grantee_uid": 31337},
                       {"key_id": other}):
            with self.subTest(change=list(change)):
                saved = self.edit("grants", {"id": self.gid}, **change)
                self.assertGrantRefused(self.label, key=change.get("key_id"))
                self.put_back("grants", saved)
                self.assertVerifies()

    def test_a_revoked_grant_made_active_again_is_refused_or_found_by_verify(self):
        active = self.row("grants", id=self.gid)
        self.kms.ok("grant", "revoke", self.gid)
        with self.subTest(attack="state edited back to active"):
            saved = self.edit("grants", {"id": self.gid}, state="active", ended_at=None)
            self.assertGrantRefused(self.label)
            self.put_back("grants", saved)
            self.assertVerifies()
        with self.subTest(attack="the genuine active row replayed"):
            self.put_back("grants", active)
            self.assertReplayFound()

    def test_a_deleted_grant_is_found_by_verify(self):
        self.delete("grants", id=self.gid)
        self.assertReplayFound()


if __name__ == "__main__":
    kmsenv.main()
