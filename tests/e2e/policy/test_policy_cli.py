"""Policy files from the command line: `kmsctl policy validate` checks a file and lists every
problem with its place; `kmsctl policy check` decides one request by a file, naming the rule that
decided (docs/POLICY.md). Neither opens a vault."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase, OK, USAGE, NOT_FOUND, REFUSED

POLICY = """\
version = 1

[[statements]]
sid = "daemon-decrypts"
effect = "allow"
principals = ["user:daemon"]
actions = ["kms:Decrypt", "kms:Describe*"]
resources = ["alias/app", "key/+"]
conditions = { context_subset = { app = "billing" } }

[[statements]]
sid = "root-group-audits"
effect = "allow"
principals = ["group:root"]
roles = ["auditor"]
resources = ["*"]

[[statements]]
effect = "deny"
principals = ["*"]
actions = ["kms:*"]
resources = ["alias/retired-*"]
"""

POLICY_JSON = {
    "version": 1,
    "statements": [
        {"sid": "daemon-decrypts", "effect": "allow", "principals": ["user:daemon"],
         "actions": ["kms:Decrypt", "kms:Describe*"], "resources": ["alias/app", "key/+"],
         "conditions": {"context_subset": {"app": "billing"}}},
        {"sid": "root-group-audits", "effect": "allow", "principals": ["group:root"],
         "roles": ["auditor"], "resources": ["*"]},
        {"effect": "deny", "principals": ["*"], "actions": ["kms:*"],
         "resources": ["alias/retired-*"]},
    ],
}

BROKEN = """\
[[statements]]
effect = "permit"
principals = ["user:no-such-user-e2e"]
actions = ["kms:Fly"]
resources = ["key/a+"]
"""


class PolicyCli(KmsTestCase):
    def write(self, name, text):
        path = self.kms.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, policy, *args):
        return self.kms.run("policy", "check", "--policy", policy, *args)

    def check_json(self, policy, *args, rc=OK):
        r = self.check(policy, *args, "--json")
        self.assertEqual((r.rc, r.err), (rc, ""), r.show())
        return r.json()

    def test_validate_accepts_a_good_policy_in_toml_and_json(self):
        toml = self.write("policy.toml", POLICY)
        r = self.kms.run("policy", "validate", toml)
        self.assertEqual((r.rc, r.err), (OK, ""), r.show())
        self.assertEqual(r.out, f"policy {toml}: 3 statements OK\n")
        js = self.write("policy.json", json.dumps(POLICY_JSON, indent=2))
        r = self.kms.run("policy", "validate", js)
        self.assertEqual(r.out, f"policy {js}: 3 statements OK\n", r.show())
        r = self.kms.json("policy", "validate", js, "--json")
        self.assertEqual(r, {"file": js, "ok": True, "statements": 3, "problems": []})
        self.assertFalse(os.path.exists(self.kms.vault_dir), "validating needs no vault")

    def test_validate_lists_every_problem_with_its_line(self):
        path = self.write("broken.toml", BROKEN)
        r = self.kms.run("policy", "validate", path)
        self.assertError(r, USAGE, f"policy {path}: 4 problems", hint="docs/POLICY.md")
        lines = [l for l in r.err.splitlines() if l.startswith(path + ":")]
        self.assertEqual(len(lines), 4, r.show())
        self.assertTrue(lines[0].startswith(f"{path}:2:10: statements[0].effect: "), r.show())
        self.assertIn(f"{path}:3:", lines[1])
        self.assertIn('no user named "no-such-user-e2e"', lines[1])
        self.assertIn(f"{path}:4:", lines[2])
        self.assertIn('unknown action "kms:Fly"', lines[2])
        self.assertIn(f"{path}:5:", lines[3])
        r = self.kms.run("policy", "validate", path, "--json")
        self.assertEqual(r.rc, USAGE)
        problems = json.loads(r.out)["problems"]
        self.assertEqual([p["line"] for p in problems], [2, 3, 4, 5])
        self.assertEqual(problems[0]["path"], "statements[0].effect")

    def test_validate_names_a_syntax_error_and_json_paths(self):
        path = self.write("syntax.toml", "[[statements]]\neffect = \"allow\nprincipals = 1\n")
        r = self.kms.run("policy", "validate", path)
        self.assertError(r, USAGE, f"policy {path}: 1 problem")
        self.assertIn(f"{path}:2:", r.err)
        bad = dict(POLICY_JSON)
        bad["statements"] = [dict(POLICY_JSON["statements"][0], effect="maybe", colour="red")]
        path = self.write("bad.json", json.dumps(bad))
        r = self.kms.run("policy", "validate", path)
        self.assertError(r, USAGE, f"{path}: statements[0].effect: must be",
                         f'{path}: statements[0].colour: unknown field "colour"')
        path = self.write("syntax.json", '{\n  "statements": [\n    {"effect": "allow",}\n]}\n')
        r = self.kms.run("policy", "validate", path)
        self.assertError(r, USAGE, f"{path}:3:")
        r = self.kms.run("policy", "validate", self.kms.path("missing.toml"))
        self.assertError(r, USAGE, "cannot read policy")

    def test_check_allows_and_denies_naming_the_rule(self):
        for name, text in (("p.toml", POLICY), ("p.json", json.dumps(POLICY_JSON))):
            with self.subTest(file=name):
                policy = self.write(name, text)
                r = self.check(policy, "--principal", "user:daemon", "--action", "kms:Decrypt",
                               "--resource", "alias/app", "--context", "app=billing")
                self.assertEqual((r.rc, r.err), (OK, ""), r.show())
                self.assertIn("allow kms:Decrypt for user:daemon (uid 1) on alias/app", r.out)
                self.assertIn("decided by policy:daemon-decrypts (statements[0]", r.out)
                # Without the context the condition fails: default deny, exit 4.
                r = self.check(policy, "--principal", "user:daemon", "--action", "kms:Decrypt",
                               "--resource", "alias/app")
                self.assertEqual(r.rc, REFUSED, r.show())
                self.assertIn("deny kms:Decrypt", r.out)
                self.assertIn("decided by default-deny: no policy statement or grant allows", r.out)
                # An explicit deny wins: a key matched by its alias/retired-... name.
                r = self.check_json(policy, "--principal", "uid:1", "--action", "kms:decrypt",
                                    "--resource", "key/k1", "--resource", "alias/retired-app",
                                    "--context", "app=billing", rc=REFUSED)
                self.assertEqual(r["decision"], "deny")
                self.assertEqual(r["rule"], "policy:2")
                self.assertEqual(r["statement"]["index"], 2)
                self.assertEqual(r["action"], "kms:Decrypt")
                self.assertIn("denies kms:Decrypt", r["reason"])
                # Root's group audits but decrypts nothing.
                r = self.check_json(policy, "--principal", "user:root", "--action",
                                    "audit:Query", "--resource", "vault")
                self.assertEqual((r["decision"], r["rule"]), ("allow", "policy:root-group-audits"))
                self.assertIsNone(r["reason"])
                self.assertIn(0, r["gids"])
                r = self.check(policy, "--principal", "user:root", "--action",
                               "secrets:GetSecretValue", "--resource", "secret/db")
                self.assertEqual(r.rc, REFUSED, r.show())

    def test_check_refuses_what_it_cannot_read(self):
        policy = self.write("p.toml", POLICY)
        r = self.check(policy, "--principal", "user:no-such-user-e2e", "--action", "kms:Decrypt",
                       "--resource", "key/k")
        self.assertError(r, NOT_FOUND, "no user named no-such-user-e2e")
        r = self.check(policy, "--principal", "alice", "--action", "kms:Decrypt", "--resource",
                       "key/k")
        self.assertError(r, USAGE, "expected user:NAME or uid:N")
        r = self.check(policy, "--principal", "uid:0", "--action", "kms:Fly", "--resource", "key/k")
        self.assertError(r, USAGE, "--action kms:Fly: no such action")
        r = self.check(policy, "--principal", "uid:0", "--action", "kms:Decrypt")
        self.assertError(r, USAGE, "--resource")
        r = self.check(policy, "--principal", "uid:0", "--action", "kms:Decrypt", "--resource",
                       "key/k", "--context", "novalue")
        self.assertError(r, USAGE, "--context novalue: expected KEY=VALUE")
        broken = self.write("broken.toml", BROKEN)
        r = self.check(broken, "--principal", "uid:0", "--action", "kms:Decrypt", "--resource",
                       "key/k")
        self.assertError(r, USAGE, "4 problems")
        self.assertFalse(os.path.exists(self.kms.vault_dir), "checking needs no vault")


if __name__ == "__main__":
    unittest.main()
