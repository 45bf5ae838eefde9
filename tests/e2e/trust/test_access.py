"""Authorisation: every operation is decided for its caller before it runs. The vault's owner
(the uid that owns the vault file) may do everything; anyone else is refused with exit 4 and a
`denied` audit record naming the caller, the action, the resource and the rule
(docs/SECURITY.md §3.4). The attacker here is root, who can open every file: only the runner's
decision stands between them and the vault."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase

NOBODY = 65534


@unittest.skipUnless(os.geteuid() == 0, "needs root to give the vault to another uid")
class NotTheOwner(KmsTestCase):
    def give_vault_to(self, uid):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.kms.vault + suffix):
                os.chown(self.kms.vault + suffix, uid, -1)

    def test_every_operation_by_another_uid_is_refused_audited_and_changes_nothing(self):
        self.kms.init()
        key = self.kms.ok("key", "create", "--alias", "alias/app").out.strip()
        self.kms.write_secret_file("value", "s3cr3t-value-7c1")
        self.kms.ok("secret", "create", "app/db", "--value-file", self.kms.path("value"))
        with open(self.kms.path("plain"), "wb") as f:
            f.write(b"hello")
        self.kms.ok("encrypt", "--key", "alias/app", "--in", self.kms.path("plain"), "--out",
                    self.kms.path("blob"))
        before = self.kms.sql("SELECT count(*) FROM audit_log")[0][0]
        self.give_vault_to(NOBODY)
        self.addCleanup(self.give_vault_to, 0)
        attempts = [
            (("secret", "get", "app/db"), "secret.get", "secret/app/db"),
            (("decrypt", "--in", self.kms.path("blob"), "--out", self.kms.path("out")),
             "key.decrypt", "key/" + key),
            (("encrypt", "--key", "alias/app", "--in", self.kms.path("plain"), "--out",
              self.kms.path("blob2")), "key.encrypt", "key/alias/app"),
            (("key", "disable", key), "key.disable", "key/" + key),
            (("key", "list"), "key.list", None),
            (("status",), "vault.status", None),
        ]
        for argv, action, resource in attempts:
            r = self.kms.run(*argv)
            self.assertEqual(r.rc, 4, r.show(argv))
            self.assertIn("root (uid 0) may not " + action, r.err, r.show(argv))
            self.assertIn("only the vault's owner (uid %d)" % NOBODY, r.err)
            self.assertRegex(r.err, r"(?m)^hint: \S")
            self.assertNotIn("s3cr3t-value-7c1", r.out + r.err)
            self.assertEqual(r.out, "")
            self.assertFalse(os.path.exists(self.kms.path("out")), "decrypt wrote plaintext")
            self.assertFalse(os.path.exists(self.kms.path("blob2")), "encrypt wrote output")
        rows = self.kms.sql("SELECT principal, uid, action, resource, params, outcome, "
                            "error_code FROM audit_log WHERE seq > ? ORDER BY seq", (before,))
        self.assertEqual([r[2] for r in rows], [a for _, a, _ in attempts])
        for (principal, uid, action, res, params, outcome, code), (argv, _, resource) in zip(
                rows, attempts):
            self.assertEqual((principal, uid, outcome, code), ("root", 0, "denied", "refused"),
                             argv)
            p = json.loads(params)
            self.assertEqual(p["rule"], "not-owner", argv)
            self.assertNotIn("channel", p, "a direct call has no channel parameter")
            if resource:
                self.assertEqual(res, resource, argv)
        # Nothing changed: the key is still enabled, and the owner's log verifies.
        self.give_vault_to(0)
        self.assertEqual(self.kms.sql("SELECT state FROM keys WHERE id = ?", (key,))[0][0],
                         "Enabled")
        r = self.kms.run("audit", "verify")
        self.assertEqual(r.rc, 0, r.show())


if __name__ == "__main__":
    kmsenv.main()
