"""Grants through the real binary, as the vault's owner (direct mode): create prints an id, list
shows it, revoke and retire end it once, `audit list --grant` finds its records, and bad requests
fail with the exit code and message of docs/ARCHITECTURE.md §6 (docs/POLICY.md §6)."""

import json
import os
import pwd
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import SharedVaultTestCase, NOT_FOUND, REFUSED, USAGE

GRANT_ID = re.compile(r"^g-[0-9a-f]{24}$")
ALLOWED = "Encrypt, Decrypt, ReEncrypt, GenerateDataKey, DescribeKey, CreateGrant, RetireGrant"


def me():
    return "user:" + pwd.getpwuid(os.getuid()).pw_name


class Grants(SharedVaultTestCase):
    def key(self, *args):
        return self.vault.ok("key", "create", *args).out.strip()

    def create(self, key, *args):
        return self.vault.ok("grant", "create", "--key", key, "--grantee", "uid:4242",
                             "--operations", "Encrypt,Decrypt", *args).out.strip()

    def test_create_prints_an_id_list_shows_it_and_its_record_names_it(self):
        key = self.key("--alias", "alias/isv")
        r, rec = self.audited("grant", "create", "--key", "alias/isv", "--grantee", me(),
                              "--operations", "Encrypt,kms:Decrypt,GenerateDataKey",
                              "--context-subset", "tenant=t1", "--expires", "30d",
                              "--name", "isv", action="grant.create")
        gid = r.out.strip()
        self.assertRegex(gid, GRANT_ID)
        self.assertEqual(rec["resource"], "key/" + key)
        self.assertEqual(rec["params"]["grant_id"], gid)
        self.assertEqual(rec["params"]["grantee"], me())
        self.assertEqual(rec["params"]["operations"],
                         ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"])
        self.assertEqual(rec["params"]["constraints"], {"context_subset": {"tenant": "t1"}})
        self.assertIsNotNone(rec["params"]["expires"])

        page = self.vault.json("grant", "list", "--key", key, "--json")
        self.assertIsNone(page["next"])
        [g] = page["items"]
        self.assertEqual(g["grant_id"], gid)
        self.assertEqual(g["key_id"], key)
        self.assertEqual(g["grantee_uid"], os.getuid())
        self.assertEqual(g["state"], "active")
        self.assertEqual(g["name"], "isv")
        self.assertEqual(g["context_subset"], {"tenant": "t1"})
        self.assertEqual(g["expires"], rec["params"]["expires"])
        text = self.vault.ok("grant", "list", "--grantee", me()).out
        self.assertIn(gid, text)
        self.assertIn("Encrypt,Decrypt,GenerateDataKey", text)
        # The same name with the same terms: the same grant (no second row).
        again = self.vault.ok("grant", "create", "--key", key, "--grantee", me(), "--operations",
                              "GenerateDataKey,Decrypt,Encrypt", "--context-subset", "tenant=t1",
                              "--name", "isv").out.strip()
        self.assertEqual(again, gid)
        r = self.vault.run("grant", "create", "--key", key, "--grantee", me(), "--operations",
                           "Encrypt", "--name", "isv")
        self.assertError(r, REFUSED, "already has an active grant named")

    def test_revoke_and_retire_end_a_grant_once_and_audit_list_finds_its_records(self):
        key = self.key()
        a = self.create(key)
        b = self.create(key, "--retiring-principal", me())
        r, rec = self.audited("grant", "revoke", a, action="grant.revoke")
        self.assertEqual(r.out, "")
        self.assertIn(f"grant {a} revoked", r.err)
        self.assertEqual(rec["resource"], "key/" + key)
        self.assertEqual(rec["params"]["grant_id"], a)
        r, rec = self.audited("grant", "retire", b, "--json", action="grant.retire")
        self.assertEqual(json.loads(r.out)["state"], "retired")
        self.assertEqual(rec["resource"], "grant/" + b)
        _, rec = self.audited("grant", "revoke", a, action="grant.revoke", rc=REFUSED)
        r = self.vault.run("grant", "retire", b)
        self.assertError(r, REFUSED, f"grant {b} is already retired")

        self.assertEqual(self.vault.json("grant", "list", "--key", key, "--json")["items"], [])
        ended = self.vault.json("grant", "list", "--key", key, "--all", "--json")["items"]
        self.assertEqual([(g["grant_id"], g["state"]) for g in ended],
                         [(a, "revoked"), (b, "retired")])

        recs = self.vault.json("audit", "list", "--grant", a, "--json")["items"]
        self.assertEqual([x["action"] for x in recs],
                         ["grant.revoke", "grant.revoke", "grant.create"])
        self.assertEqual([x["outcome"] for x in recs], ["denied", "ok", "ok"])

    def test_paging(self):
        key = self.key()
        ids = [self.create(key) for _ in range(3)]
        first = self.vault.json("grant", "list", "--key", key, "--limit", "2", "--json")
        self.assertEqual([g["grant_id"] for g in first["items"]], ids[:2])
        self.assertEqual(first["next"], ids[1])
        second = self.vault.json("grant", "list", "--key", key, "--limit", "2", "--after",
                                 first["next"], "--json")
        self.assertEqual([g["grant_id"] for g in second["items"]], ids[2:])
        self.assertIsNone(second["next"])

    def test_an_operation_outside_the_set_is_a_usage_error_naming_the_set(self):
        key = self.key()
        _, rec = self.audited("grant", "create", "--key", key, "--grantee", "uid:4242",
                              "--operations", "Encrypt,ScheduleKeyDeletion",
                              action="grant.create", rc=USAGE)
        r = self.vault.run("grant", "create", "--key", key, "--grantee", "uid:4242",
                           "--operations", "kms:DisableKey")
        self.assertError(r, USAGE, "kms:DisableKey", ALLOWED)

    def test_unknown_keys_users_and_grants(self):
        r = self.vault.run("grant", "create", "--key", "alias/none", "--grantee", "uid:4242",
                           "--operations", "Encrypt")
        self.assertError(r, NOT_FOUND, "alias/none")
        r = self.vault.run("grant", "create", "--key", "0b7c6a8e-1f52-4d3a-9c4b-2e6f8a1d5c70",
                           "--grantee", "uid:4242", "--operations", "Encrypt")
        self.assertError(r, NOT_FOUND, "no key 0b7c6a8e-1f52-4d3a-9c4b-2e6f8a1d5c70")
        key = self.key()
        r = self.vault.run("grant", "create", "--key", key, "--grantee",
                           "user:no-such-user-e2e-4b1", "--operations", "Encrypt")
        self.assertError(r, USAGE, "no-such-user-e2e-4b1")
        r = self.vault.run("grant", "create", "--key", key, "--grantee", "alice",
                           "--operations", "Encrypt")
        self.assertError(r, USAGE, "is not user:NAME or uid:N")
        r = self.vault.run("grant", "create", "--key", key, "--grantee", "uid:4242",
                           "--operations", "Encrypt", "--expires", "3651d")
        self.assertError(r, USAGE, "not a duration between 1s and 3650d")
        r = self.vault.run("grant", "revoke", "g-000000000000000000000000")
        self.assertError(r, NOT_FOUND, "no grant g-000000000000000000000000")
        self.vault.ok("key", "schedule-deletion", key, "--pending-days", "7")
        r = self.vault.run("grant", "create", "--key", key, "--grantee", "uid:4242",
                           "--operations", "Encrypt")
        self.assertError(r, REFUSED, "pending deletion")


if __name__ == "__main__":
    kmsenv.main()
