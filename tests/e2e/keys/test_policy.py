"""Key policies through the real binary, as the vault's owner (direct mode): `key set-policy`
stores a key's own policy file exactly as given (TOML or JSON), `key get-policy` prints it back,
`--remove` removes it, a policy with problems is refused naming each with its line, and each
command writes one audit record that names the policy's SHA-256, never its text
(docs/POLICY.md, "Key policies")."""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import SharedVaultTestCase, NOT_FOUND, USAGE, RFC3339_MS

TOML = """# who may use this key besides the service's policy file
[[statements]]
sid = "isv-encrypt"
effect = "allow"
principals = ["uid:4242"]
actions = ["kms:Encrypt", "kms:Decrypt"]
resources = ["*"]
"""
JSON = ('{"statements": [{"sid": "nobody", "effect": "deny", "principals": ["*"], '
        '"actions": ["kms:*"], "resources": ["*"]}]}')


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


class KeyPolicy(SharedVaultTestCase):
    def key(self, *args):
        return self.vault.ok("key", "create", *args).out.strip()

    def policy_file(self, name, text):
        p = self.vault.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_set_get_replace_and_remove(self):
        key = self.key("--alias", "alias/pol")
        r, rec = self.audited("key", "get-policy", "alias/pol", action="key.get_policy")
        self.assertEqual(r.out, "")
        self.assertIn("no policy", r.err)

        r, rec = self.audited("key", "set-policy", "alias/pol", self.policy_file("p.toml", TOML),
                              action="key.set_policy")
        self.assertEqual(r.out, "")
        self.assertIn(f"key {key}: policy set (1 statement, sha256 {sha256(TOML)})", r.err)
        self.assertEqual(rec["resource"], "key/" + key)
        self.assertEqual(rec["params"]["sha256"], sha256(TOML))
        self.assertEqual(rec["params"]["statements"], 1)
        self.assertNotIn("isv-encrypt", str(rec["params"]))

        r, rec = self.audited("key", "get-policy", key, action="key.get_policy")
        self.assertEqual(r.out, TOML)  # exactly as given, comment and all
        self.assertEqual(rec["params"]["sha256"], sha256(TOML))
        info = self.vault.json("key", "get-policy", "alias/pol", "--json")
        self.assertEqual(info["key_id"], key)
        self.assertEqual(info["text"], TOML)
        self.assertEqual(info["sha256"], sha256(TOML))
        self.assertRegex(info["updated"], RFC3339_MS)
        self.assertEqual(info["updated_by_uid"], os.getuid())

        # Replaced by a JSON policy read from stdin.
        info = self.vault.json("key", "set-policy", key, "-", "--json", input=JSON)
        self.assertEqual(info["text"], JSON)
        self.assertEqual(self.vault.ok("key", "get-policy", key).out, JSON)

        r, rec = self.audited("key", "set-policy", key, "--remove", action="key.set_policy")
        self.assertIn("policy removed", r.err)
        self.assertTrue(rec["params"]["removed"])
        r = self.vault.ok("key", "get-policy", key)
        self.assertEqual(r.out, "")
        info = self.vault.json("key", "get-policy", key, "--json")
        self.assertIsNone(info["text"])
        self.assertIsNone(info["sha256"])
        self.vault.ok("audit", "verify")

    def test_a_policy_with_problems_is_refused_naming_each_line(self):
        key = self.key()
        bad = ('[[statements]]\neffect = "maybe"\nprincipals = ["*"]\nactions = ["kms:Encrypt"]\n'
               'resources = ["*"]\n\n[[statements]]\neffect = "allow"\nprincipals = ["*"]\n'
               'actions = ["kms:NoSuchThing"]\nresources = ["*"]\n')
        r, rec = self.audited("key", "set-policy", key, self.policy_file("bad.toml", bad),
                              action="key.set_policy", rc=USAGE)
        self.assertIn("2 problems", r.err)
        self.assertIn("2:", r.err)
        self.assertIn("10:", r.err)
        self.assertEqual(self.vault.ok("key", "get-policy", key).out, "")

    def test_usage_errors_and_unknown_keys(self):
        key = self.key()
        self.unaudited("key", "set-policy", key, rc=USAGE)
        self.unaudited("key", "set-policy", key, self.policy_file("x.toml", TOML), "--remove",
                       rc=USAGE)
        big = self.policy_file("big.toml", "#" * (64 * 1024 + 1))
        self.unaudited("key", "set-policy", key, big, rc=USAGE)
        self.audited("key", "get-policy", "alias/nope", action="key.get_policy", rc=NOT_FOUND)

    def test_a_key_pending_deletion_keeps_its_policy_settable(self):
        key = self.key()
        self.vault.ok("key", "schedule-deletion", key, "--pending-days", "7")
        self.vault.ok("key", "set-policy", key, self.policy_file("pd.toml", TOML))
        self.assertEqual(self.vault.ok("key", "get-policy", key).out, TOML)


if __name__ == "__main__":
    kmsenv.main()
