"""Key lifecycle through the real binary: create (every option), list (state filters, paging),
describe, enable/disable, rotate, versions, set-rotation, schedule/cancel deletion, aliases and
tags. Every command that reaches the vault writes exactly one audit record; usage errors are
caught before the vault is opened and write none."""

import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (SharedVaultTestCase, NOT_FOUND, REFUSED, RFC3339_MS, USAGE, UUID4, days, ts)


class Create(SharedVaultTestCase):
    def test_create_json_reports_every_option_and_describe_shows_the_same_key(self):
        r, rec = self.audited("key", "create", "--description", "payments ledger",
                              "--alias", "alias/ledger", "--tag", "team=payments",
                              "--tag", "env=prod", "--rotation-period", "90d", "--json",
                              action="key.create")
        k = r.json()
        self.assertRegex(k["key_id"], UUID4)
        self.assertEqual(k["aliases"], ["alias/ledger"])
        self.assertEqual(k["description"], "payments ledger")
        self.assertEqual(k["spec"], "AES_256")
        self.assertEqual(k["usage"], "ENCRYPT_DECRYPT")
        self.assertEqual(k["state"], "Enabled")
        self.assertEqual(k["protection"], "software")
        self.assertRegex(k["created"], RFC3339_MS)
        self.assertEqual(k["last_rotated"], k["created"])
        self.assertEqual(k["rotation_period_days"], 90)
        self.assertEqual(ts(k["next_rotation"]), ts(k["created"]) + days(90))
        self.assertIsNone(k["deletion_date"])
        self.assertEqual(k["primary_version"], 1)
        self.assertEqual(k["versions"], [{"version": 1, "created": k["created"], "primary": True}])
        self.assertEqual(k["tags"], {"team": "payments", "env": "prod"})
        self.assertEqual(rec["resource"], "key/" + k["key_id"])
        self.assertEqual(rec["params"]["alias"], "alias/ledger")
        self.assertEqual(rec["params"]["rotation_period_days"], 90)
        self.assertEqual(rec["params"]["protection"], "software")

        # describe, by id and by alias, shows exactly what create reported.
        r, rec = self.audited("key", "describe", k["key_id"], "--json", action="key.describe")
        self.assertEqual(r.json(), k)
        self.assertEqual(rec["resource"], "key/" + k["key_id"])
        r, rec = self.audited("key", "describe", "alias/ledger", "--json", action="key.describe")
        self.assertEqual(r.json(), k)
        self.assertEqual(rec["resource"], "key/" + k["key_id"])
        self.assertEqual(rec["params"], {"key_alias": "alias/ledger", "key_id": k["key_id"],
                                         "host": kmsenv.HOST})

        # The readable form names every field.
        r, _ = self.audited("key", "describe", "alias/ledger", action="key.describe")
        lines = r.out.splitlines()
        expected = {
            "key id": k["key_id"], "aliases": "alias/ledger", "description": "payments ledger",
            "spec / usage": "AES_256 / ENCRYPT_DECRYPT", "state": "Enabled",
            "protection": "software", "created": k["created"],
            "rotation": f"every 90d; last {k['created']}; next {k['next_rotation']}",
            "versions": "1 (primary 1)",
        }
        for label, value in expected.items():
            self.assertIn(f"{label:<17}{value}", lines, r.out)
        self.assertIn(f"{'tag':<17}env=prod", lines)
        self.assertIn(f"{'tag':<17}team=payments", lines)

    def test_create_without_options_prints_only_the_id_of_an_enabled_software_key(self):
        r, rec = self.audited("key", "create", action="key.create")
        key_id = r.out.strip()
        self.assertEqual(r.out, key_id + "\n")
        self.assertRegex(key_id, UUID4)
        self.assertEqual(r.err, "")
        self.assertEqual(rec["resource"], "key/" + key_id)
        k = self.vault.json("key", "describe", key_id, "--json")
        self.assertEqual((k["state"], k["protection"], k["aliases"], k["tags"], k["description"]),
                         ("Enabled", "software", [], {}, ""))
        self.assertIsNone(k["rotation_period_days"])
        self.assertIsNone(k["next_rotation"])

    def test_key_ids_are_distinct_random_uuids(self):
        ids = {self.vault.create_key() for _ in range(3)}
        self.assertEqual(len(ids), 3)
        for i in ids:
            self.assertRegex(i, UUID4)

    def test_rotation_period_accepts_7d_to_730d_with_or_without_the_d(self):
        for text, n in (("7d", 7), ("730d", 730), ("30", 30)):
            k = self.vault.json("key", "create", "--rotation-period", text, "--json")
            self.assertEqual(k["rotation_period_days"], n, text)

    def test_create_usage_errors_write_nothing_and_create_nothing(self):
        keys_before = self.vault.sql("SELECT count(*) FROM keys")[0][0]
        for args, needle in (
                (("--rotation-period", "6d"), "--rotation-period"),
                (("--rotation-period", "731d"), "--rotation-period"),
                (("--rotation-period", "ninety"), "--rotation-period"),
                (("--alias", "ledger2"), "not a valid alias"),
                (("--alias", "alias/"), "not a valid alias"),
                (("--alias", "alias/has space"), "not a valid alias"),
                (("--alias", "alias/" + "a" * 251), "not a valid alias"),
                (("--tag", "novalue"), "--tag"),
                (("--spec", "AES_128"), "--spec"),
                (("--protection", "cloud"), "--protection")):
            r = self.unaudited("key", "create", *args, rc=USAGE)
            self.assertError(r, USAGE, needle)
        self.assertEqual(self.vault.sql("SELECT count(*) FROM keys")[0][0], keys_before)

    def test_create_with_a_taken_alias_is_refused_and_leaves_no_key_behind(self):
        first = self.vault.create_key("--alias", "alias/taken")
        keys_before = self.vault.sql("SELECT count(*) FROM keys")[0][0]
        versions_before = self.vault.sql("SELECT count(*) FROM key_versions")[0][0]
        r, rec = self.audited("key", "create", "--alias", "alias/taken", action="key.create",
                              rc=REFUSED, error_code="refused")
        self.assertError(r, REFUSED, "alias/taken", "already exists", hint="alias update")
        self.assertEqual(self.vault.sql("SELECT count(*) FROM keys")[0][0], keys_before)
        self.assertEqual(self.vault.sql("SELECT count(*) FROM key_versions")[0][0], versions_before)
        self.assertEqual(self.vault.sql("SELECT key_id FROM key_aliases WHERE alias = ?",
                                        ("alias/taken",)), [(first,)])


class List(SharedVaultTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        v = cls.vault
        cls.ids = [v.create_key("--description", f"k{i}") for i in range(5)]
        v.ok("key", "disable", cls.ids[1])
        v.ok("key", "disable", cls.ids[3])
        v.ok("key", "schedule-deletion", cls.ids[4], "--pending-days", "7")

    def listing(self, *args):
        r, rec = self.audited("key", "list", "--json", *args, action="key.list")
        return r.json(), rec

    def test_list_returns_every_key_oldest_first_with_the_describe_fields(self):
        page, rec = self.listing()
        self.assertIsNone(page["next"])
        got = [k["key_id"] for k in page["items"]]
        self.assertEqual(sorted(got), sorted(self.ids))
        order = [(k["created"], k["key_id"]) for k in page["items"]]
        self.assertEqual(order, sorted(order))
        first = self.vault.json("key", "describe", page["items"][0]["key_id"], "--json")
        self.assertEqual(page["items"][0], first)
        self.assertEqual(rec["params"]["limit"], 100)

    def test_state_filters_return_exactly_the_keys_in_that_state(self):
        for state, want, name in (("enabled", [0, 2], "Enabled"), ("disabled", [1, 3], "Disabled"),
                                  ("pending-deletion", [4], "PendingDeletion")):
            page, rec = self.listing("--state", state)
            self.assertEqual([k["key_id"] for k in page["items"]], [self.ids[i] for i in want],
                             state)
            self.assertEqual({k["state"] for k in page["items"]}, {name})
            self.assertEqual(rec["params"]["state"], name)

    def test_limit_and_after_page_through_all_keys_and_next_is_null_on_the_last_page(self):
        full, _ = self.listing()
        seen, after, pages = [], None, 0
        while True:
            args = ["--limit", "2"] + (["--after", after] if after else [])
            page, rec = self.listing(*args)
            pages += 1
            self.assertLessEqual(len(page["items"]), 2)
            seen += [k["key_id"] for k in page["items"]]
            if after:
                self.assertEqual(rec["params"]["after"], after)
            after = page["next"]
            if after is None:
                break
            self.assertEqual(after, seen[-1], "next is the last key of the page")
        self.assertEqual(pages, 3)
        self.assertEqual(seen, [k["key_id"] for k in full["items"]])
        # Paging combines with a state filter.
        page, _ = self.listing("--state", "disabled", "--limit", "1")
        self.assertEqual([k["key_id"] for k in page["items"]], [self.ids[1]])
        self.assertEqual(page["next"], self.ids[1])
        page, _ = self.listing("--state", "disabled", "--limit", "1", "--after", self.ids[1])
        self.assertEqual([k["key_id"] for k in page["items"]], [self.ids[3]])
        self.assertIsNone(page["next"])

    def test_text_listing_has_a_row_per_key_and_tells_how_to_get_the_next_page(self):
        r, _ = self.audited("key", "list", "--limit", "3", action="key.list")
        lines = r.out.splitlines()
        self.assertRegex(lines[0], r"^KEY ID\s+STATE\s+PROTECTION\s+ORIGIN\s+VERSION\s+CREATED\s+"
                                   r"MATERIAL EXPIRES\s+ALIASES")
        self.assertEqual(len(lines), 4)
        for line, key_id in zip(lines[1:], self.ids[:3]):
            self.assertTrue(line.startswith(key_id), line)
        self.assertIn(f"kmsctl key list --after {self.ids[2]}", r.err)

    def test_after_an_unknown_key_id_is_an_error_not_a_silently_empty_page(self):
        # A mistyped or stale `next` must not look like "no more keys".
        ghost = str(uuid.uuid4())
        r = self.vault.run("key", "list", "--json", "--after", ghost)
        self.assertIn(r.rc, (USAGE, NOT_FOUND), f"expected exit 2 or 3:\n{r!r}")
        self.assertError(r, r.rc, ghost)

    def test_bad_state_or_limit_is_a_usage_error(self):
        for args in (("--state", "Enabled"), ("--state", "deleted"), ("--limit", "0")):
            r = self.unaudited("key", "list", *args, rc=USAGE)
            self.assertError(r, USAGE, args[0])


class States(SharedVaultTestCase):
    def test_disable_then_enable_changes_the_state_and_each_writes_one_record(self):
        key = self.vault.create_key("--rotation-period", "30d")
        r, rec = self.audited("key", "disable", key, "--json", action="key.disable")
        k = r.json()
        self.assertEqual(k["state"], "Disabled")
        self.assertIsNone(k["next_rotation"], "a disabled key is not rotated")
        self.assertEqual(rec["resource"], "key/" + key)
        r, _ = self.audited("key", "enable", key, "--json", action="key.enable")
        k = r.json()
        self.assertEqual(k["state"], "Enabled")
        self.assertEqual(ts(k["next_rotation"]), ts(k["last_rotated"]) + days(30))
        # Both are idempotent.
        self.audited("key", "enable", key, action="key.enable")
        self.audited("key", "disable", key, action="key.disable")
        self.audited("key", "disable", key, action="key.disable")
        self.assertEqual(self.vault.json("key", "describe", key, "--json")["state"], "Disabled")

    def test_rotate_adds_a_primary_version_and_versions_lists_them_all(self):
        key = self.vault.create_key("--rotation-period", "90d")
        for n in (2, 3):
            r, rec = self.audited("key", "rotate", key, "--json", action="key.rotate")
            k = r.json()
            self.assertEqual(rec["params"]["version"], n)
            self.assertEqual(k["primary_version"], n)
            self.assertEqual([v["version"] for v in k["versions"]], list(range(1, n + 1)))
            self.assertEqual([v["primary"] for v in k["versions"]], [False] * (n - 1) + [True])
            self.assertEqual(k["last_rotated"], k["versions"][-1]["created"])
            self.assertEqual(ts(k["next_rotation"]), ts(k["last_rotated"]) + days(90))
        r, rec = self.audited("key", "versions", key, "--json", action="key.describe")
        self.assertEqual(r.json(), {"items": k["versions"], "next": None})
        r, _ = self.audited("key", "versions", key, action="key.describe")
        lines = r.out.splitlines()
        self.assertRegex(lines[0], r"^\s*VERSION\s+CREATED\s+PRIMARY$")
        self.assertEqual([l.split()[0] for l in lines[1:]], ["1", "2", "3"])
        self.assertEqual([l.split()[-1] == "yes" for l in lines[1:]], [False, False, True])
        # A disabled key can still be rotated; its versions keep counting.
        self.vault.ok("key", "disable", key)
        self.assertEqual(self.vault.json("key", "rotate", key, "--json")["primary_version"], 4)

    def test_set_rotation_sets_the_period_and_off_clears_it(self):
        key = self.vault.create_key()
        for text, n in (("7d", 7), ("730d", 730), ("45", 45)):
            r, rec = self.audited("key", "set-rotation", key, "--period", text, "--json",
                                  action="key.set_rotation")
            k = r.json()
            self.assertEqual(k["rotation_period_days"], n)
            self.assertEqual(ts(k["next_rotation"]), ts(k["last_rotated"]) + days(n))
            self.assertEqual(rec["params"]["rotation_period_days"], n)
        r, rec = self.audited("key", "set-rotation", key, "--off", "--json",
                              action="key.set_rotation")
        k = r.json()
        self.assertIsNone(k["rotation_period_days"])
        self.assertIsNone(k["next_rotation"])
        self.assertIsNone(rec["params"]["rotation_period_days"])

    def test_set_rotation_out_of_range_or_without_a_choice_is_a_usage_error(self):
        key = self.vault.create_key("--rotation-period", "90d")
        for args, needle in ((("--period", "6d"), "6d"), (("--period", "731d"), "731d"),
                             (("--period", "0"), "--period"), (("--period", "-7d"), "--period"),
                             ((), "--period"), (("--period", "90d", "--off"), "--off")):
            r = self.unaudited("key", "set-rotation", key, *args, rc=USAGE)
            self.assertError(r, USAGE, needle)
        self.assertEqual(self.vault.json("key", "describe", key, "--json")
                         ["rotation_period_days"], 90)

    def test_schedule_deletion_sets_pending_state_and_date_and_cancel_returns_to_disabled(self):
        key = self.vault.create_key("--alias", "alias/doomed")
        r, rec = self.audited("key", "schedule-deletion", "alias/doomed", "--json",
                              action="key.schedule_deletion")
        k = r.json()
        self.assertEqual(k["state"], "PendingDeletion")
        self.assertEqual(rec["params"]["pending_days"], 30)
        self.assertEqual(rec["params"]["deletion_date"], k["deletion_date"])
        # 30 days (the default) from when the command ran.
        delta = ts(k["deletion_date"]) - ts(rec["time"])
        self.assertLess(abs(delta - days(30)).total_seconds(), 60, delta)
        self.assertEqual(r.err, "", "--json prints the key instead of the confirmation")
        self.assertIn(f"deletion date    {k['deletion_date']}",
                      self.vault.ok("key", "describe", key).out)
        # Without --json: one line on stderr with the date and how to cancel.
        self.vault.ok("key", "cancel-deletion", key)
        r = self.vault.ok("key", "schedule-deletion", key)
        self.assertEqual(r.out, "")
        date = self.vault.json("key", "describe", key, "--json")["deletion_date"]
        self.assertEqual(r.err, f"key {key}: PendingDeletion, deleted on {date} "
                                f"(cancel with `kmsctl key cancel-deletion {key}`)\n")

        # Scheduling again is refused, as are enable and disable.
        for verb, action in (("schedule-deletion", "key.schedule_deletion"),
                             ("enable", "key.enable"), ("disable", "key.disable"),
                             ("rotate", "key.rotate")):
            r, _ = self.audited("key", verb, key, action=action, rc=REFUSED)
            self.assertError(r, REFUSED, key, "pending deletion", hint="cancel-deletion")

        r, rec = self.audited("key", "cancel-deletion", key, "--json",
                              action="key.cancel_deletion")
        k = r.json()
        self.assertEqual(k["state"], "Disabled")
        self.assertIsNone(k["deletion_date"])
        self.assertEqual(k["aliases"], ["alias/doomed"])
        r, _ = self.audited("key", "cancel-deletion", key, action="key.cancel_deletion",
                            rc=REFUSED)
        self.assertError(r, REFUSED, key, "not pending deletion")

    def test_pending_days_accepts_7_to_30_and_nothing_else(self):
        for n in ("7", "30d"):
            key = self.vault.create_key()
            r, rec = self.audited("key", "schedule-deletion", key, "--pending-days", n, "--json",
                                  action="key.schedule_deletion")
            want = int(n.rstrip("d"))
            self.assertEqual(rec["params"]["pending_days"], want)
            delta = ts(r.json()["deletion_date"]) - ts(rec["time"])
            self.assertLess(abs(delta - days(want)).total_seconds(), 60, delta)
        key = self.vault.create_key()
        for n in ("6", "31", "0", "x"):
            r = self.unaudited("key", "schedule-deletion", key, "--pending-days", n, rc=USAGE)
            self.assertError(r, USAGE, "--pending-days")
        self.assertEqual(self.vault.json("key", "describe", key, "--json")["state"], "Enabled")

    def test_every_key_verb_on_an_unknown_key_exits_3_naming_it(self):
        ghost = str(uuid.uuid4())
        cases = [(("key", "describe", "alias/ghost"), "key.describe"),
                 (("key", "describe", ghost), "key.describe"),
                 (("key", "versions", ghost), "key.describe"),
                 (("key", "enable", ghost), "key.enable"),
                 (("key", "disable", ghost), "key.disable"),
                 (("key", "rotate", ghost), "key.rotate"),
                 (("key", "set-rotation", ghost, "--off"), "key.set_rotation"),
                 (("key", "schedule-deletion", ghost), "key.schedule_deletion"),
                 (("key", "cancel-deletion", ghost), "key.cancel_deletion"),
                 (("key", "tag", ghost, "a=b"), "key.tag"),
                 (("key", "untag", ghost, "a"), "key.untag")]
        for args, action in cases:
            r, rec = self.audited(*args, action=action, rc=NOT_FOUND, error_code="not_found")
            self.assertError(r, NOT_FOUND, args[2], hint="kmsctl key")


class Aliases(SharedVaultTestCase):
    def aliases(self):
        r, _ = self.audited("key", "alias", "list", "--json", action="key.alias_list")
        return {a["alias"]: a["key_id"] for a in r.json()["items"]}

    def test_alias_create_update_delete_and_list(self):
        a, b = self.vault.create_key(), self.vault.create_key()
        r, rec = self.audited("key", "alias", "create", "alias/team/app-1_x", a,
                              action="key.alias_create")
        self.assertEqual(rec["resource"], "key/" + a)
        self.assertEqual(rec["params"]["alias"], "alias/team/app-1_x")
        self.audited("key", "alias", "create", "alias/second", "alias/team/app-1_x",
                     action="key.alias_create")
        self.assertEqual(self.aliases(), {"alias/team/app-1_x": a, "alias/second": a})
        self.assertEqual(self.vault.json("key", "describe", a, "--json")["aliases"],
                         ["alias/second", "alias/team/app-1_x"])

        r, rec = self.audited("key", "alias", "update", "alias/second", b,
                              action="key.alias_update")
        self.assertEqual(rec["resource"], "key/" + b)
        self.assertEqual(rec["params"]["previous_key"], a)
        self.assertEqual(self.vault.json("key", "describe", "alias/second", "--json")["key_id"], b)

        r, rec = self.audited("key", "alias", "delete", "alias/second",
                              action="key.alias_delete")
        self.assertEqual(rec["resource"], "key/" + b)
        self.assertEqual(self.aliases(), {"alias/team/app-1_x": a})
        self.assertEqual(self.vault.json("key", "describe", b, "--json")["state"], "Enabled",
                         "deleting an alias keeps the key")

        r, _ = self.audited("key", "alias", "list", action="key.alias_list")
        lines = r.out.splitlines()
        self.assertRegex(lines[0], r"^ALIAS\s+KEY ID$")
        self.assertIn(f"{'alias/team/app-1_x':<40}  {a}", lines)

    def test_duplicate_alias_is_refused_and_keeps_its_key(self):
        a, b = self.vault.create_key(), self.vault.create_key()
        self.vault.ok("key", "alias", "create", "alias/dup", a)
        r, rec = self.audited("key", "alias", "create", "alias/dup", b,
                              action="key.alias_create", rc=REFUSED, error_code="refused")
        self.assertError(r, REFUSED, "alias/dup", "already exists", hint="alias update")
        self.assertEqual(self.vault.sql("SELECT key_id FROM key_aliases WHERE alias = 'alias/dup'"),
                         [(a,)])

    def test_bad_alias_names_are_usage_errors_that_write_nothing(self):
        a = self.vault.create_key()
        for bad in ("noprefix", "alias/", "alias/a b", "alias/a*b", "ALIAS/x",
                    "alias/" + "n" * 251):
            for verb in ("create", "update"):
                r = self.unaudited("key", "alias", verb, bad, a, rc=USAGE)
                self.assertError(r, USAGE, "not a valid alias", hint="alias/NAME")
        # 250 characters is the longest name.
        self.vault.ok("key", "alias", "create", "alias/" + "n" * 250, a)

    def test_unknown_alias_or_key_exits_3(self):
        a = self.vault.create_key()
        r, _ = self.audited("key", "alias", "update", "alias/nowhere", a,
                            action="key.alias_update", rc=NOT_FOUND, error_code="not_found")
        self.assertError(r, NOT_FOUND, "alias/nowhere", hint="alias create")
        r, _ = self.audited("key", "alias", "delete", "alias/nowhere",
                            action="key.alias_delete", rc=NOT_FOUND, error_code="not_found")
        self.assertError(r, NOT_FOUND, "alias/nowhere", hint="alias list")
        ghost = str(uuid.uuid4())
        r, _ = self.audited("key", "alias", "create", "alias/for-ghost", ghost,
                            action="key.alias_create", rc=NOT_FOUND, error_code="not_found")
        self.assertError(r, NOT_FOUND, ghost)
        self.assertEqual(self.vault.sql("SELECT count(*) FROM key_aliases WHERE alias = ?",
                                        ("alias/for-ghost",)), [(0,)])


class Tags(SharedVaultTestCase):
    def test_tag_adds_and_overwrites_and_untag_removes(self):
        key = self.vault.create_key("--tag", "a=1")
        r, rec = self.audited("key", "tag", key, "b=2", "c=x=y", "--json", action="key.tag")
        self.assertEqual(r.json()["tags"], {"a": "1", "b": "2", "c": "x=y"})
        self.assertEqual(rec["params"]["tags"], {"b": "2", "c": "x=y"})
        r, _ = self.audited("key", "tag", key, "a=changed", "--json", action="key.tag")
        self.assertEqual(r.json()["tags"], {"a": "changed", "b": "2", "c": "x=y"})
        r, rec = self.audited("key", "untag", key, "a", "c", "--json", action="key.untag")
        self.assertEqual(r.json()["tags"], {"b": "2"})
        self.assertEqual(rec["params"]["names"], ["a", "c"])

    def test_untag_of_an_unknown_tag_exits_3_and_removes_nothing(self):
        key = self.vault.create_key("--tag", "keep=1", "--tag", "also=2")
        r, _ = self.audited("key", "untag", key, "keep", "missing", action="key.untag",
                            rc=NOT_FOUND, error_code="not_found")
        self.assertError(r, NOT_FOUND, "missing", key, hint="key describe")
        self.assertEqual(self.vault.json("key", "describe", key, "--json")["tags"],
                         {"keep": "1", "also": "2"})

    def test_a_tag_without_a_value_is_a_usage_error(self):
        key = self.vault.create_key()
        for bad in ("novalue", "=v"):
            r = self.unaudited("key", "tag", key, bad, rc=USAGE)
            self.assertError(r, USAGE, bad)


class AuditTrail(SharedVaultTestCase):
    def test_audit_list_agrees_with_the_log_table_one_record_per_command(self):
        before = self.vault.records()  # its own record comes after
        key = self.vault.create_key("--alias", "alias/trail")
        for args in (("key", "describe", key), ("key", "disable", key), ("key", "enable", key),
                     ("key", "rotate", key), ("key", "versions", key),
                     ("key", "set-rotation", key, "--period", "9d"), ("key", "tag", key, "t=1"),
                     ("key", "untag", key, "t"), ("key", "alias", "list"),
                     ("key", "alias", "update", "alias/trail", key),
                     ("key", "alias", "delete", "alias/trail"), ("key", "list"),
                     ("key", "schedule-deletion", key), ("key", "cancel-deletion", key)):
            self.vault.ok(*args)
        after = self.vault.records()
        new = after[len(before) + 1:]
        self.assertEqual([r["action"] for r in new], [
            "key.create", "key.describe", "key.disable", "key.enable", "key.rotate",
            "key.describe", "key.set_rotation", "key.tag", "key.untag", "key.alias_list",
            "key.alias_update", "key.alias_delete", "key.list", "key.schedule_deletion",
            "key.cancel_deletion"])
        self.assertEqual({r["outcome"] for r in new}, {"ok"})
        self.assertEqual(len(after), self.vault.audit_count() - 1)


if __name__ == "__main__":
    kmsenv.main()
