"""The audit log as a user reads it: one record per command that opens the vault, the filters of
`audit list`, and `audit export` (JSON Lines for a SIEM)."""

import datetime
import json
import os
import pwd
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import AUDIT_FIELDS, RFC3339_MS, KmsTestCase, file_mode


class OneRecordPerCommand(KmsTestCase):
    def test_every_command_that_opens_the_vault_appends_exactly_one_record(self):
        self.kms.init()
        vid = self.kms.status()["vault"]["id"]
        new_pin = self.kms.write_secret_file("new-pin", "e2e-New-Pin-77aa")
        commands = [
            (("status",), "vault.status", {}),
            (("status", "--json"), "vault.status", {}),
            (("audit", "list"), "audit.list", {}),
            (("audit", "verify"), "audit.verify", {}),
            (("audit", "verify", "--json"), "audit.verify", {}),
            (("audit", "export", "--output", self.kms.path("log.jsonl")), "audit.export", {}),
            (("vault", "backup", self.kms.path("backup.db")), "vault.backup", {}),
            (("vault", "rekey"), "vault.rekey", {}),
            (("vault", "change-pin"), "vault.change_pin", {"KMSCTL_NEW_PIN_FILE": new_pin}),
        ]
        if self.kms.db:
            # A vault in PostgreSQL is backed up with PostgreSQL's own tools: `vault backup`
            # copies a vault file only.
            commands = [c for c in commands if c[1] != "vault.backup"]
        me = pwd.getpwuid(os.getuid()).pw_name
        before = self.kms.records()
        for args, action, env in commands:
            with self.subTest(command=" ".join(args)):
                self.kms.ok(*args, env=env)
                if action == "vault.change_pin":
                    self.kms.pin_file = new_pin
                after = self.kms.records()
                # The previous listing's own record, then exactly one for the command (two for
                # change-pin: its start, recorded before the token changes, and its end).
                steps = 2 if action == "vault.change_pin" else 1
                self.assertEqual(len(after), len(before) + 1 + steps,
                                 [r["action"] for r in after[len(before):]])
                if steps == 2:
                    self.assertEqual([r["params"]["step"] for r in after[-2:]], ["start", "done"])
                self.assertEqual(after[:len(before)], before, "earlier records never change")
                self.assertEqual(after[len(before)]["action"], "audit.list")
                rec = after[-1]
                self.assertEqual(rec["action"], action)
                self.assertEqual(rec["outcome"], "ok")
                self.assertEqual(rec["error_code"], "")
                self.assertEqual(rec["resource"], f"vault/{vid}")
                self.assertEqual(rec["principal"], me)
                self.assertEqual(rec["uid"], os.getuid())
                self.assertRegex(rec["time"], RFC3339_MS)
                self.assertEqual(rec["seq"], after[-2]["seq"] + 1)
                self.assertEqual(rec["prev_hash"], after[-2]["hash"])
                before = after
        self.kms.ok("audit", "verify")

    def test_the_init_record_names_module_and_token(self):
        self.kms.init()
        first = self.kms.records()[0]
        st = self.kms.status()
        self.assertEqual(first["seq"], 1)
        self.assertEqual(first["action"], "vault.init")
        # A vault file's init makes a token of its own beside it (private); a vault in
        # PostgreSQL uses the HSM host's token, through the module that reaches it.
        module = self.kms.db.module if self.kms.db else kmsenv.SOFTHSM_MODULE
        self.assertEqual(first["params"], {"pkcs11_module": module,
                                           "token_label": st["token"]["label"],
                                           "token_serial": st["token"]["serial"],
                                           "private_token": not self.kms.db, "host": kmsenv.HOST})

    def test_every_record_has_a_json_object_as_params(self):
        # store.hpp: "params; // canonical JSON object" — never null, never a bare value.
        self.kms.init()
        self.kms.ok("status")
        self.kms.ok("audit", "verify")
        for rec in self.kms.records():
            with self.subTest(seq=rec["seq"], action=rec["action"]):
                self.assertIsInstance(rec["params"], dict)

    def test_commands_that_do_not_open_the_vault_append_nothing(self):
        self.kms.init()
        n = len(self.kms.records())
        for args in (("version",), ("completion", "bash"), ("manpage",), ("--help",),
                     ("status", "--bogus"), ("audit", "list", "--since", "yesterday")):
            self.kms.run(*args)
        wrong = self.kms.write_secret_file("wrong", "Wrong-Pin-0001")
        self.kms.run("status", env={"KMSCTL_PIN_FILE": wrong})
        self.assertEqual(len(self.kms.records()), n + 1)  # just the first listing

    @kmsenv.file_store_only("`vault backup` copies a vault file")
    def test_a_backup_refused_because_the_file_exists_is_recorded_as_denied(self):
        # It logged in to the token and opened the vault, then was refused: that is an
        # operation attempt, and every one is audited (success, failure, denied).
        self.kms.init()
        target = self.kms.write_secret_file("exists.db", "do not overwrite")
        r = self.kms.run("vault", "backup", target)
        self.assertEqual(r.rc, 4, r.show())
        rec = self.kms.records()[-1]
        self.assertEqual((rec["action"], rec["outcome"], rec["error_code"]),
                         ("vault.backup", "denied", "refused"))

    def test_an_export_refused_because_the_file_exists_is_recorded_as_denied(self):
        self.kms.init()
        target = self.kms.write_secret_file("exists.jsonl", "do not overwrite")
        r = self.kms.run("audit", "export", "--output", target)
        self.assertEqual(r.rc, 4, r.show())
        rec = self.kms.records()[-1]
        self.assertEqual((rec["action"], rec["outcome"], rec["error_code"]),
                         ("audit.export", "denied", "refused"))


class ListFilters(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.populate(3)
        self.vid = self.kms.status()["vault"]["id"]
        # One failure record: a verify that fails on an edited record, then the edit undone.
        (action,) = self.kms.sql("SELECT action FROM audit_log WHERE seq = 2")[0]
        self.kms.sql("UPDATE audit_log SET action = 'key.delete' WHERE seq = 2")
        r = self.kms.run("audit", "verify")
        self.assertEqual(r.rc, 5, r.show())
        self.kms.sql("UPDATE audit_log SET action = ? WHERE seq = 2", (action,))
        self.kms.ok("audit", "verify")

    def listing(self, *filters):
        """`audit list FILTERS --json` and what it should have returned: the filter applied to
        the whole log as it was (read right after, without the filtered listing's own record)."""
        got = self.kms.json("audit", "list", "--json", *filters)["items"]
        everything = self.kms.records()
        self.assertEqual(everything[-1]["action"], "audit.list")
        return got, list(reversed(everything[:-1]))  # newest first, like `audit list`

    def test_a_failed_verify_is_recorded_with_outcome_error(self):
        got, _ = self.listing("--outcome", "error")
        self.assertEqual(len(got), 1, got)
        self.assertEqual((got[0]["action"], got[0]["error_code"]), ("audit.verify", "integrity"))
        self.assertEqual(got[0]["params"].get("ok"), False)
        self.assertEqual(got[0]["params"].get("first_bad_seq"), 2)

    def test_filter_by_action_outcome_principal_and_resource(self):
        me = pwd.getpwuid(os.getuid()).pw_name
        cases = [
            (("--action", "vault.status"), lambda r: r["action"] == "vault.status"),
            (("--action", "audit.verify"), lambda r: r["action"] == "audit.verify"),
            (("--action", "no.such"), lambda r: False),
            (("--outcome", "ok"), lambda r: r["outcome"] == "ok"),
            (("--outcome", "error"), lambda r: r["outcome"] == "error"),
            (("--outcome", "denied"), lambda r: r["outcome"] == "denied"),
            (("--principal", me), lambda r: True),
            (("--principal", "nobody-at-all"), lambda r: False),
            (("--resource", f"vault/{self.vid}"), lambda r: True),
            (("--resource", "vault/other"), lambda r: False),
            (("--action", "audit.verify", "--outcome", "ok"),
             lambda r: r["action"] == "audit.verify" and r["outcome"] == "ok"),
        ]
        for filters, keep in cases:
            with self.subTest(filters=filters):
                got, log = self.listing(*filters)
                self.assertEqual(got, [r for r in log if keep(r)])
        got, _ = self.listing("--action", "vault.status")
        self.assertEqual(len(got), 4)  # the populate statuses and setUp's status

    def test_limit_returns_the_newest_records_first(self):
        got, log = self.listing("--limit", "2")
        self.assertEqual(got, log[:2])
        self.assertGreater(got[0]["seq"], got[1]["seq"])
        got, log = self.listing("--limit", "1", "--action", "vault.status")
        self.assertEqual(got, [r for r in log if r["action"] == "vault.status"][:1])

    def test_since_is_inclusive_and_until_exclusive(self):
        log = list(reversed(self.kms.records()))
        pivot = log[len(log) // 2]["time"]
        got, log = self.listing("--since", pivot)
        self.assertEqual(got, [r for r in log if r["time"] >= pivot])
        self.assertIn(pivot, [r["time"] for r in got])
        got, log = self.listing("--until", pivot)
        self.assertEqual(got, [r for r in log if r["time"] < pivot])
        self.assertNotIn(pivot, [r["time"] for r in got])
        first, last = log[-1]["time"], log[0]["time"]
        got, log = self.listing("--since", first, "--until", last)
        self.assertEqual(got, [r for r in log if first <= r["time"] < last])

    def test_since_accepts_a_date_and_an_offset(self):
        log = list(reversed(self.kms.records()))
        pivot = log[len(log) // 2]["time"]
        t = datetime.datetime.strptime(pivot, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
        plus_one = t.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
        offset_form = plus_one.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+01:00"
        by_offset, _ = self.listing("--since", offset_form)
        by_utc, _ = self.listing("--since", pivot)
        # by_utc also holds the by_offset listing's own record; compare the older records.
        self.assertEqual(by_offset, [r for r in by_utc if r["seq"] <= by_offset[0]["seq"]])
        tomorrow = (t + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
        got, _ = self.listing("--since", tomorrow)
        self.assertEqual(got, [])
        got, log = self.listing("--until", tomorrow)
        self.assertEqual(got, log[:100])

    def test_a_bad_time_is_a_usage_error_with_a_hint(self):
        n = len(self.kms.records())
        for bad in ("yesterday", "2026-13-01", "2026-11-28T25:00:00Z", "2026-11-28T10:00:00"):
            with self.subTest(since=bad):
                r = self.kms.run("audit", "list", "--since", bad)
                self.assertError(r, 2, bad, "RFC 3339")
        self.assertEqual(len(self.kms.records()), n + 1)

    def test_text_listing_has_a_header_and_one_line_per_record(self):
        r = self.kms.ok("audit", "list")
        lines = r.out.splitlines()
        self.assertRegex(lines[0], r"^\s*SEQ\s+TIME\s+PRINCIPAL\s+ACTION\s+RESOURCE\s+OUTCOME$")
        log = self.kms.records()[:-1]  # without the text listing's own record
        self.assertEqual(len(lines) - 1, len(log))
        self.assertIn("audit.verify", r.out)
        self.assertIn("error (integrity)", r.out)


class Export(KmsTestCase):
    def test_export_writes_json_lines_0600_one_record_per_line(self):
        self.populate(2)
        out = self.kms.path("siem", "log.jsonl")
        os.mkdir(os.path.dirname(out))
        r = self.kms.run("audit", "export", "--output", out)
        self.assertOk(r)
        self.assertEqual(r.out, "")
        self.assertEqual(file_mode(out), 0o600)
        with open(out, "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(b"\n"))
        lines = data.decode().split("\n")[:-1]
        self.assertIn(f"exported {len(lines)} audit records to {out}", r.err)
        rows = [json.loads(l) for l in lines]
        self.assertIn("state", rows[0], "the first record holds the vault's first state")
        for row in rows:
            self.assertEqual(set(row) - {"state"}, set(AUDIT_FIELDS))
            if "state" in row:
                self.assertRegex(row["state"], r"^[0-9a-f]{64}$")
            self.assertRegex(row["time"], RFC3339_MS)
            self.assertRegex(row["hash"], r"^[0-9a-f]{64}$")
            self.assertRegex(row["mac"], r"^[0-9a-f]{64}$")
        self.assertEqual([row["seq"] for row in rows], list(range(1, len(rows) + 1)))
        for a, b in zip(rows, rows[1:]):
            self.assertEqual(b["prev_hash"], a["hash"])
        # The same records `audit list` shows; the export's own record comes after them.
        log = self.kms.records()
        self.assertEqual(rows, log[:len(rows)])
        self.assertEqual(log[len(rows)]["action"], "audit.export")
        self.assertEqual(log[len(rows)]["params"].get("records"), len(rows))
        self.assertEqual(os.listdir(os.path.dirname(out)), ["log.jsonl"], "no temp files left")

    def test_export_refuses_an_existing_file_without_force(self):
        self.kms.init()
        out = self.kms.write_secret_file("log.jsonl", "precious")
        r = self.kms.run("audit", "export", "--output", out)
        self.assertError(r, 4, out, "--force")
        with open(out) as f:
            self.assertEqual(f.read(), "precious\n")
        r = self.kms.run("audit", "export", "-o", out, "--force")
        self.assertOk(r)
        with open(out) as f:
            lines = f.read().splitlines()
        self.assertTrue(lines and all(json.loads(l)["seq"] for l in lines))
        self.assertEqual(file_mode(out), 0o600)


if __name__ == "__main__":
    kmsenv.main()
