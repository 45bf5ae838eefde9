"""Secret policies through the real binary, as the vault's owner (direct mode): `secret
set-policy` stores a secret's own policy file exactly as given (TOML or JSON), `secret get-policy`
prints it back, `--remove` removes it, a policy with problems is refused naming each with its line,
each command writes one audit record that names the policy's SHA-256, never its text, and a
secret's purge takes its policy with it (docs/POLICY.md, "Secret policies")."""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import SharedVaultTestCase, NOT_FOUND, USAGE, RFC3339_MS

VALUE = "secret-policy-value-9d27e1"
TOML = """# who may read this secret besides the service's policy file
[[statements]]
sid = "isv-reads"
effect = "allow"
principals = ["uid:4242"]
actions = ["secrets:GetSecretValue", "secrets:DescribeSecret"]
resources = ["*"]
"""
JSON = ('{"statements": [{"sid": "nobody", "effect": "deny", "principals": ["*"], '
        '"actions": ["secrets:*"], "resources": ["*"]}]}')


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


class SecretPolicy(SharedVaultTestCase):
    def secret(self, name):
        info = self.vault.json("secret", "create", name, "--value-stdin", "--json", input=VALUE)
        return info["secret_id"]

    def policy_file(self, name, text):
        p = self.vault.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def assertNoValue(self, r):
        self.assertNotIn(VALUE, r.out + r.err)

    def test_set_get_replace_and_remove(self):
        sid = self.secret("pol/db")
        r, rec = self.audited("secret", "get-policy", "pol/db", action="secret.get_policy")
        self.assertEqual(r.out, "")
        self.assertIn("secret pol/db has no policy of its own", r.err)
        self.assertEqual(rec["resource"], "secret/pol/db")

        r, rec = self.audited("secret", "set-policy", "pol/db", self.policy_file("p.toml", TOML),
                              action="secret.set_policy")
        self.assertEqual(r.out, "")
        self.assertIn(f"secret pol/db: policy set (1 statement, sha256 {sha256(TOML)})", r.err)
        self.assertNoValue(r)
        self.assertEqual(rec["resource"], "secret/pol/db")
        self.assertEqual(rec["params"]["name"], "pol/db")
        self.assertEqual(rec["params"]["sha256"], sha256(TOML))
        self.assertEqual(rec["params"]["statements"], 1)
        self.assertNotIn("isv-reads", str(rec["params"]))

        r, rec = self.audited("secret", "get-policy", "pol/db", action="secret.get_policy")
        self.assertEqual(r.out, TOML)  # exactly as given, comment and all
        self.assertNoValue(r)
        self.assertEqual(rec["params"]["sha256"], sha256(TOML))
        info = self.vault.json("secret", "get-policy", "pol/db", "--json")
        self.assertEqual(info, {"name": "pol/db", "secret_id": sid, "text": TOML,
                                "sha256": sha256(TOML), "updated": info["updated"],
                                "updated_by_uid": os.getuid()})
        self.assertRegex(info["updated"], RFC3339_MS)

        # Replaced by a JSON policy read from stdin.
        info = self.vault.json("secret", "set-policy", "pol/db", "-", "--json", input=JSON)
        self.assertEqual(info["text"], JSON)
        self.assertEqual(self.vault.ok("secret", "get-policy", "pol/db").out, JSON)

        r, rec = self.audited("secret", "set-policy", "pol/db", "--remove",
                              action="secret.set_policy")
        self.assertIn("secret pol/db: policy removed", r.err)
        self.assertTrue(rec["params"]["removed"])
        self.assertEqual(self.vault.ok("secret", "get-policy", "pol/db").out, "")
        info = self.vault.json("secret", "get-policy", "pol/db", "--json")
        self.assertEqual((info["secret_id"], info["text"], info["sha256"]), (sid, None, None))
        # None to remove: still fine, and recorded as such.
        r, rec = self.audited("secret", "set-policy", "pol/db", "--remove",
                              action="secret.set_policy")
        self.assertFalse(rec["params"]["removed"])
        # The value was never touched.
        self.assertEqual(self.vault.ok("secret", "get", "pol/db").out, VALUE)
        self.vault.ok("audit", "verify")

    def test_a_policy_with_problems_is_refused_naming_each_line(self):
        self.secret("pol/bad")
        bad = ('[[statements]]\neffect = "maybe"\nprincipals = ["*"]\n'
               'actions = ["secrets:GetSecretValue"]\nresources = ["*"]\n\n[[statements]]\n'
               'effect = "allow"\nprincipals = ["*"]\nactions = ["secrets:NoSuchThing"]\n'
               'resources = ["*"]\n')
        r, rec = self.audited("secret", "set-policy", "pol/bad", self.policy_file("bad.toml", bad),
                              action="secret.set_policy", rc=USAGE)
        self.assertIn("the policy for secret pol/bad has 2 problems", r.err)
        self.assertIn("2:", r.err)
        self.assertIn("10:", r.err)
        self.assertEqual(rec["outcome"], "error")
        self.assertEqual(self.vault.ok("secret", "get-policy", "pol/bad").out, "")

    def test_usage_errors_and_unknown_secrets(self):
        self.secret("pol/usage")
        self.unaudited("secret", "set-policy", "pol/usage", rc=USAGE)
        self.unaudited("secret", "set-policy", "pol/usage", self.policy_file("x.toml", TOML),
                       "--remove", rc=USAGE)
        big = self.policy_file("big.toml", "#" * (64 * 1024 + 1))
        self.unaudited("secret", "set-policy", "pol/usage", big, rc=USAGE)
        self.audited("secret", "get-policy", "pol/nope", action="secret.get_policy",
                     rc=NOT_FOUND)
        self.audited("secret", "set-policy", "pol/nope", "-", action="secret.set_policy",
                     rc=NOT_FOUND, input=TOML)

    def test_a_secret_pending_deletion_keeps_its_policy_and_its_purge_removes_it(self):
        sid = self.secret("pol/gone")
        self.vault.ok("secret", "set-policy", "pol/gone", self.policy_file("g.toml", TOML))
        self.vault.ok("secret", "delete", "pol/gone", "--recovery-days", "7")
        self.assertEqual(self.vault.ok("secret", "get-policy", "pol/gone").out, TOML)
        self.vault.ok("secret", "set-policy", "pol/gone", "-", input=JSON)
        self.assertEqual(self.vault.sql("SELECT count(*) FROM secret_policies WHERE secret_id = ?",
                                        (sid,))[0][0], 1)
        self.vault.ok("secret", "delete", "pol/gone", "--force")
        self.assertEqual(self.vault.sql("SELECT count(*) FROM secret_policies WHERE secret_id = ?",
                                        (sid,))[0][0], 0)
        self.vault.ok("audit", "verify")
        # A new secret of the same name starts with no policy.
        self.secret("pol/gone")
        self.assertEqual(self.vault.ok("secret", "get-policy", "pol/gone").out, "")


if __name__ == "__main__":
    kmsenv.main()
