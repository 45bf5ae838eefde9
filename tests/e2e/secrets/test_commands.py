"""Every secret command through the real binary and token: create (stdin, file, generate), get
(stages, version ids, --field, --json), put and the stage transitions, list, describe, versions,
delete (recovery window, --force), restore; a disabled key makes its secrets unreadable; values
never come from argv and never reach the vault file, its WAL, stderr or the audit log."""

import json
import os
import string
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import NOT_FOUND, REFUSED, USAGE, SecretsTestCase, main, ts

SECRET_VALUES = [b"correct-horse-battery-staple-0001", b"second-value-zz-0002", b"third-value-yy-0003"]


class Commands(SecretsTestCase):

    def test_create_get_put_moves_current_to_previous_and_drops_the_older_stage(self):
        v = self.vault
        r, rec = self.audited("secret", "create", "app/db", "--value-stdin", "--description", "db",
                              "--tag", "team=core", input=SECRET_VALUES[0], action="secret.create")
        self.assertEqual(r.raw, b"", "create prints no value")
        self.assertEqual(rec["resource"], "secret/app/db")
        self.assertEqual(len(v.sql("SELECT alias FROM key_aliases WHERE alias = 'alias/kmsctl/secrets'")), 1,
                         "the default key is made on first use")
        r, rec = self.audited("secret", "get", "app/db", action="secret.get")
        self.assertEqual(r.raw, SECRET_VALUES[0], "raw value, no newline added")
        self.assertEqual(rec["params"]["version"], 1)
        self.assertEqual(self.stages("app/db"), {"current": 1, "previous": None, "pending": None})

        self.audited("secret", "put", "app/db", "--value-stdin", input=SECRET_VALUES[1],
                     action="secret.put")
        self.assertEqual(self.stages("app/db"), {"current": 2, "previous": 1, "pending": None})
        self.put("app/db", SECRET_VALUES[2])
        self.assertEqual(self.stages("app/db"), {"current": 3, "previous": 2, "pending": None})
        self.assertEqual(self.get("app/db"), SECRET_VALUES[2])
        self.assertEqual(self.get("app/db", "--stage", "current"), SECRET_VALUES[2])
        self.assertEqual(self.get("app/db", "--stage", "previous"), SECRET_VALUES[1])
        self.assertEqual(self.get("app/db", "--version-id", "1"), SECRET_VALUES[0])
        self.assertError(v.run("secret", "get", "app/db", "--stage", "pending"), NOT_FOUND, "pending")
        self.assertError(v.run("secret", "get", "app/db", "--version-id", "9"), NOT_FOUND, "version 9")
        j = v.json("secret", "get", "app/db", "--stage", "previous", "--json")
        self.assertEqual(j, {"name": "app/db", "version": 2, "stages": ["previous"],
                             "value": SECRET_VALUES[1].decode()})
        versions = v.json("secret", "versions", "app/db", "--json")["items"]
        self.assertEqual([(x["version"], x["stages"]) for x in versions],
                         [(1, []), (2, ["previous"]), (3, ["current"])])
        d = self.describe("app/db")
        self.assertEqual(d["description"], "db")
        self.assertEqual(d["tags"], {"team": "core"})
        self.assertEqual(d["key_aliases"], ["alias/kmsctl/secrets"])
        self.assertEqual(d["version_count"], 3)
        listed = {s["name"]: s for s in v.json("secret", "list", "--json")["items"]}
        self.assertIn("app/db", listed)
        self.assertNotIn("value", json.dumps(listed["app/db"]))
        self.assertNotStored(*SECRET_VALUES)
        for row in v.audit_rows():
            for val in SECRET_VALUES:
                self.assertNotIn(val.decode(), json.dumps(row), "a value reached the audit log")

    def test_value_from_a_file_and_json_fields(self):
        v = self.vault
        path = v.path("creds.json")
        doc = {"host": "db.example", "port": 5432, "user": "app", "password": "pa55-w0rd-json"}
        with open(path, "w") as f:
            json.dump(doc, f)
        v.ok("secret", "create", "app/json", "--value-file", path)
        self.assertEqual(json.loads(self.get("app/json")), doc)
        self.assertEqual(self.get("app/json", "--field", "password"), b"pa55-w0rd-json")
        self.assertEqual(self.get("app/json", "--field", "port"), b"5432")
        j = v.json("secret", "get", "app/json", "--field", "user", "--json")
        self.assertEqual((j["value"], j["field"]), ("app", "user"))
        r = v.run("secret", "get", "app/json", "--field", "nope")
        self.assertError(r, NOT_FOUND, "nope")
        self.assertNotIn("pa55-w0rd-json", r.err)
        self.create("app/plain", b"not json at all: s3cr3t-plain")
        r = v.run("secret", "get", "app/plain", "--field", "x")
        self.assertError(r, USAGE, "not a JSON object")
        self.assertNotIn("s3cr3t", r.err)

    def test_values_of_64_kib_from_a_pipe_or_a_file_and_not_one_byte_more(self):
        # The input buffer starts at the file's size (or 4 KiB for a pipe) and grows to the limit.
        v = self.vault
        value = os.urandom(65536)
        path = v.path("big.value")
        with open(path, "wb") as f:
            f.write(value)
        self.create("big/pipe", value)
        v.ok("secret", "create", "big/file", "--value-file", path)
        self.assertEqual(self.get("big/pipe"), value)
        self.assertEqual(self.get("big/file"), value)
        with open(path, "ab") as f:
            f.write(b"!")
        for args, kw in ((("--value-stdin",), {"input": value + b"!"}), (("--value-file", path), {})):
            r = self.unaudited("secret", "put", "big/pipe", *args, rc=USAGE, **kw)
            self.assertError(r, USAGE, "65536")
        self.assertEqual(self.get("big/pipe"), value)

    def test_generate_uses_the_charset_length_and_exclusions(self):
        v = self.vault
        v.ok("secret", "create", "gen/default", "--generate")
        val = self.get("gen/default").decode()
        self.assertEqual(len(val), 32)
        self.assertTrue(set(val) <= set(string.ascii_letters + string.digits), val)
        v.ok("secret", "create", "gen/hex", "--generate", "--length", "64", "--charset", "hex")
        self.assertRegex(self.get("gen/hex").decode(), r"^[0-9a-f]{64}$")
        v.ok("secret", "create", "gen/ex", "--generate", "--length", "200", "--exclude", "aeiou0O")
        val = self.get("gen/ex").decode()
        self.assertEqual(len(val), 200)
        self.assertFalse(set(val) & set("aeiou0O"), val)
        v.ok("secret", "create", "gen/sym", "--generate", "--length", "400", "--charset",
             "alnum-symbols")
        self.assertTrue(set(self.get("gen/sym").decode()) & set("!#$%&()*+,-./:;<=>?@[]^_{|}~"))
        v.ok("secret", "put", "gen/hex", "--generate")  # the secret's own generator
        self.assertRegex(self.get("gen/hex").decode(), r"^[0-9a-f]{64}$")
        self.unaudited("secret", "create", "gen/bad", "--generate", "--exclude",
                       string.ascii_letters + string.digits, rc=USAGE)
        self.unaudited("secret", "create", "gen/bad", "--generate", "--charset", "emoji", rc=USAGE)

    def test_values_never_come_from_the_command_line(self):
        for args in (("secret", "create", "x", "--value", "hunter2"),
                     ("secret", "create", "x", "hunter2"),
                     ("secret", "create", "x"),
                     ("secret", "put", "x"),
                     ("secret", "create", "x", "--value-stdin", "--generate")):
            r = self.unaudited(*args, rc=USAGE, input=b"v")
            self.assertNotIn("hunter2", r.err.split("argument")[0] if "argument" in r.err else "")
        self.unaudited("secret", "create", "bad name!", "--value-stdin", input=b"v", rc=USAGE)
        r = self.vault.run("secret", "create", "empty", "--value-stdin", input=b"")
        self.assertError(r, USAGE, "empty")
        r = self.unaudited("secret", "create", "nofile", "--value-file", "/no/such/file", rc=USAGE)
        self.assertError(r, USAGE, "/no/such/file", hint="--value-file")

    def test_existing_names_and_missing_secrets(self):
        v = self.vault
        self.create("dup", b"one-value-1111")
        r, _ = self.audited("secret", "create", "dup", "--value-stdin", input=b"x",
                            action="secret.create", rc=REFUSED)
        self.assertError(r, REFUSED, "already exists", hint="secret put dup")
        for verb in ("get", "describe", "versions", "restore", "rotate"):
            self.assertError(v.run("secret", verb, "missing"), NOT_FOUND, "missing")
        self.assertError(v.run("secret", "put", "missing", "--value-stdin", input=b"x"), NOT_FOUND)

    def test_delete_refuses_reads_until_restore_and_force_purges(self):
        v = self.vault
        self.create("del/me", b"delete-me-value-4242")
        r, rec = self.audited("secret", "delete", "del/me", "--recovery-days", "7",
                              action="secret.delete")
        self.assertIn("restore", r.err)
        d = self.describe("del/me")
        self.assertEqual((ts(d["deletion_date"]) - ts(d["updated"])).days, 7)
        self.assertError(v.run("secret", "get", "del/me"), REFUSED, "scheduled for deletion",
                         hint="secret restore del/me")
        self.assertError(v.run("secret", "put", "del/me", "--value-stdin", input=b"x"), REFUSED)
        self.assertError(v.run("secret", "create", "del/me", "--value-stdin", input=b"x"), REFUSED)
        self.assertError(v.run("secret", "delete", "del/me"), REFUSED, "already")
        listed = {s["name"]: s for s in v.json("secret", "list", "--json")["items"]}
        self.assertEqual(listed["del/me"]["deletion_date"], d["deletion_date"])
        self.audited("secret", "restore", "del/me", action="secret.restore")
        self.assertEqual(self.get("del/me"), b"delete-me-value-4242")
        for bad in ("6", "31", "x"):
            self.unaudited("secret", "delete", "del/me", "--recovery-days", bad, rc=USAGE)
        self.unaudited("secret", "delete", "del/me", "--recovery-days", "7", "--force", rc=USAGE)
        self.audited("secret", "delete", "del/me", "--force", action="secret.delete")
        self.assertError(v.run("secret", "get", "del/me"), NOT_FOUND)
        self.assertEqual(v.sql("SELECT count(*) FROM secret_versions sv JOIN secrets s "
                               "ON s.id = sv.secret_id WHERE s.name = 'del/me'"), [(0,)])
        self.create("del/me", b"a new secret of the same name")  # the name is free again

    def test_a_disabled_key_makes_its_secrets_unreadable_and_key_rotation_keeps_them(self):
        v = self.vault
        key = v.create_key("--alias", "alias/app-secrets")
        self.create("keyed", b"keyed-value-v1", "--key", "alias/app-secrets")
        self.assertEqual(self.describe("keyed")["key_id"], key)
        v.ok("key", "rotate", key)
        self.put("keyed", b"keyed-value-v2")
        self.assertEqual(self.get("keyed", "--version-id", "1"), b"keyed-value-v1")
        v.ok("key", "disable", key)
        r, rec = self.audited("secret", "get", "keyed", action="secret.get", rc=REFUSED)
        self.assertError(r, REFUSED, "disabled", hint="key enable")
        self.assertError(v.run("secret", "put", "keyed", "--value-stdin", input=b"x"), REFUSED,
                         "disabled")
        self.assertError(v.run("exec", "--secret", "keyed", "--", "true"), REFUSED, "disabled")
        v.ok("key", "enable", key)
        self.assertEqual(self.get("keyed"), b"keyed-value-v2")
        self.assertError(v.run("secret", "create", "k2", "--value-stdin", "--key", "alias/none",
                               input=b"x"), NOT_FOUND)

    def test_a_sealed_value_moved_to_another_version_does_not_open(self):
        v = self.vault
        self.create("swap", b"swap-value-one")
        self.put("swap", b"swap-value-two")
        where = "version = 2 AND secret_id = (SELECT id FROM secrets WHERE name = 'swap')"
        [(original,)] = v.sql(f"SELECT value FROM secret_versions WHERE {where}")
        v.sql("UPDATE secret_versions SET value = (SELECT value FROM secret_versions sv2 "
              "WHERE sv2.secret_id = secret_versions.secret_id AND sv2.version = 1) "
              f"WHERE {where}")
        r = v.run("secret", "get", "swap")
        self.assertEqual(r.rc, 5, r)
        self.assertNotIn("swap-value", r.err)
        self.assertEqual(self.get("swap", "--version-id", "1"), b"swap-value-one")
        # The other tests of this class share the vault: put the row back as it was.
        v.sql(f"UPDATE secret_versions SET value = ? WHERE {where}", (original,))
        self.assertEqual(self.get("swap"), b"swap-value-two")

    def test_exec_puts_secrets_in_the_environment_and_exits_with_the_command_status(self):
        v = self.vault
        self.create("exec/db-password", b"exec-value-one")
        self.put("exec/db-password", b"exec-value-two")
        self.create("token", b"tok-3")
        before = v.audit_count()
        r = v.run("exec", "--secret", "exec/db-password", "--secret", "token=API", "--",
                  "sh", "-c", 'printf "%s|%s|%s" "$EXEC_DB_PASSWORD" "$API" "$1"; exit 7',
                  "sh", "-x")
        self.assertEqual((r.rc, r.raw), (7, b"exec-value-two|tok-3|-x"), r)
        new = v.audit_rows(before)
        self.assertEqual([(x["action"], x["params"]["name"], x["params"]["exec"]["env"]) for x in new],
                         [("secret.get", "exec/db-password", "EXEC_DB_PASSWORD"),
                          ("secret.get", "token", "API")])
        r = v.run("exec", "--secret", "exec/db-password", "--stage", "previous", "--",
                  "printenv", "EXEC_DB_PASSWORD")
        self.assertEqual((r.rc, r.raw), (0, b"exec-value-one\n"), r)
        self.assertError(v.run("exec", "--secret", "nope", "--", "true"), NOT_FOUND, "nope")
        self.assertError(v.run("exec", "--secret", "token", "--", "/no/such/cmd"), NOT_FOUND,
                         "/no/such/cmd")
        self.unaudited("exec", "--secret", "token=", "--", "true", rc=USAGE)
        self.unaudited("exec", "--secret", "token", rc=USAGE)


if __name__ == "__main__":
    main()
