"""Attacks on key policies (docs/POLICY.md, "Key policies") by someone who can write the vault
file but has neither the token nor the PIN: a key's policy is an authenticated row like the key
(docs/ARCHITECTURE.md §4.9), so a policy inserted or changed with sqlite3 is refused when kmsctl
reads it (exit 5, audited), and a policy deleted, or a genuine older one put back, is found by
`audit verify`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/e2e/trust
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e
import kmsenv
from test_row_auth import ALTERED, INTEGRITY, KEY_COLUMNS, RowAttackCase

KEY_COLUMNS["key_policies"] = ("key_id",)

POLICY = """[[statements]]
sid = "isv"
effect = "allow"
principals = ["uid:4242"]
actions = ["kms:Encrypt"]
resources = ["*"]
"""


class KeyPolicyRows(RowAttackCase):
    def setUp(self):
        super().setUp()
        self.key = self.kms.ok("key", "create").out.strip()
        self.kms.ok("key", "set-policy", self.key, "-", input=POLICY)
        self.label = f"key policy (key_id {self.key})"

    def assertPolicyRefused(self, label, key=None):
        before = self.head()
        r = self.kms.run("key", "get-policy", key or self.key)
        self.assertError(r, INTEGRITY, label, ALTERED)
        self.assertRefusalRecorded(before, "key.get_policy")
        self.assertRowRefusedByVerify(label)

    def test_a_policy_inserted_with_sqlite3_is_refused_and_found_by_verify(self):
        other = self.kms.ok("key", "create").out.strip()
        row = self.row("key_policies", key_id=self.key)
        self.insert("key_policies", **dict(row, key_id=other))  # a genuine row, moved
        self.assertPolicyRefused(f"key policy (key_id {other})", key=other)

    def test_a_policy_changed_with_sqlite3_is_refused(self):
        for change in ({"text": POLICY.replace("kms:Encrypt", "kms:*")},
                       {"sha256": "0" * 64},
                       {"updated_by_uid": 31337}):
            with self.subTest(change=list(change)):
                saved = self.edit("key_policies", {"key_id": self.key}, **change)
                self.assertPolicyRefused(self.label)
                self.put_back("key_policies", saved)
                self.assertVerifies()

    def test_a_deleted_policy_is_found_by_verify(self):
        self.delete("key_policies", key_id=self.key)
        self.assertReplayFound()

    def test_an_older_policy_put_back_is_found_by_verify(self):
        older = self.row("key_policies", key_id=self.key)
        self.kms.ok("key", "set-policy", self.key, "-",
                    input=POLICY.replace("uid:4242", "uid:4343"))
        self.put_back("key_policies", older)
        self.assertReplayFound()


if __name__ == "__main__":
    kmsenv.main()
