"""Attacks on secret policies (docs/POLICY.md, "Secret policies") by someone who can write the
vault file but has neither the token nor the PIN: a secret's policy is an authenticated row like
the secret (docs/ARCHITECTURE.md §4.9), so a policy inserted or changed with sqlite3 is refused
when kmsctl reads it (exit 5, audited), and a policy deleted, or a genuine older one put back, is
found by `audit verify`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/e2e/trust
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e
import kmsenv
from test_row_auth import ALTERED, INTEGRITY, KEY_COLUMNS, RowAttackCase

KEY_COLUMNS["secret_policies"] = ("secret_id",)

VALUE = "secret-policy-rows-value-51c0d8"
POLICY = """[[statements]]
sid = "isv"
effect = "allow"
principals = ["uid:4242"]
actions = ["secrets:GetSecretValue"]
resources = ["*"]
"""


class SecretPolicyRows(RowAttackCase):
    def create_secret(self, name):
        return self.kms.json("secret", "create", name, "--value-stdin", "--json",
                             input=VALUE)["secret_id"]

    def setUp(self):
        super().setUp()
        self.secret = self.create_secret("app/db")
        self.kms.ok("secret", "set-policy", "app/db", "-", input=POLICY)
        self.label = f"secret policy (secret_id {self.secret})"

    def assertPolicyRefused(self, label, name="app/db"):
        before = self.head()
        r = self.kms.run("secret", "get-policy", name)
        self.assertError(r, INTEGRITY, label, ALTERED)
        self.assertNoValue(r, VALUE)
        self.assertRefusalRecorded(before, "secret.get_policy")
        self.assertRowRefusedByVerify(label)

    def test_a_policy_inserted_with_sqlite3_is_refused_and_found_by_verify(self):
        other = self.create_secret("app/other")
        row = self.row("secret_policies", secret_id=self.secret)
        self.insert("secret_policies", **dict(row, secret_id=other))  # a genuine row, moved
        self.assertPolicyRefused(f"secret policy (secret_id {other})", name="app/other")

    def test_a_policy_changed_with_sqlite3_is_refused(self):
        for change in ({"text": POLICY.replace("uid:4242", "*")},
                       {"sha256": "0" * 64},
                       {"updated_by_uid": 31337}):
            with self.subTest(change=list(change)):
                saved = self.edit("secret_policies", {"secret_id": self.secret}, **change)
                self.assertPolicyRefused(self.label)
                self.put_back("secret_policies", saved)
                self.assertVerifies()

    def test_a_deleted_policy_is_found_by_verify(self):
        self.delete("secret_policies", secret_id=self.secret)
        self.assertReplayFound()

    def test_an_older_policy_put_back_is_found_by_verify(self):
        older = self.row("secret_policies", secret_id=self.secret)
        self.kms.ok("secret", "set-policy", "app/db", "-",
                    input=POLICY.replace("uid:4242", "uid:4343"))
        self.put_back("secret_policies", older)
        self.assertReplayFound()

    def test_a_policy_left_behind_by_a_purge_is_found_by_verify(self):
        # The owner purges the secret; an attacker puts its policy row back, ready for a new
        # secret... but the row's MAC names the old id and the state no longer holds it.
        saved = self.row("secret_policies", secret_id=self.secret)
        self.kms.ok("secret", "delete", "app/db", "--force")
        self.assertEqual(self.rows("secret_policies"), [])
        self.assertVerifies()
        self.put_back("secret_policies", saved)
        self.assertReplayFound()


if __name__ == "__main__":
    kmsenv.main()
