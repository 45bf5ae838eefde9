"""kmsctl status and version, and every way a user can fail to reach the vault: each a specific
message, a hint, and the exit code of docs/ARCHITECTURE.md §6. Also the command line itself:
global options, help for every command, and unknown commands."""

import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase, SOFTHSM_MODULE, SOURCE_DIR


class Status(KmsTestCase):
    def test_status_json_has_the_documented_fields_and_they_agree_with_the_log(self):
        self.kms.init()
        st = self.kms.status()
        v, t = st["vault"], st["token"]
        self.assertEqual(v["path"], self.kms.vault)
        self.assertRegex(v["id"], r"^[0-9a-f-]{36}$")
        self.assertRegex(v["created"], kmsenv.RFC3339_MS)
        (on_disk,) = self.kms.sql("PRAGMA user_version")[0]
        self.assertGreaterEqual(on_disk, 1)
        self.assertEqual(v["schema_version"], on_disk)
        self.assertEqual(t["label"], "kmsctl-" + v["id"][:8])
        self.assertRegex(t["serial"], r"^\S+$")
        self.assertEqual(t["module"], SOFTHSM_MODULE)
        self.assertIs(t["private"], True)
        self.assertEqual(st["root_key_generation"], 1)
        # init + this status
        self.assertEqual(st["counts"]["audit_records"], 2)
        self.assertEqual(st["audit_head"]["seq"], 2)
        self.assertRegex(st["audit_head"]["hash"], r"^[0-9a-f]{64}$")
        rows = self.kms.records()
        self.assertEqual(len(rows), 2)
        self.assertEqual(rows[-1]["action"], "vault.status")
        self.assertEqual(rows[-1]["hash"], st["audit_head"]["hash"])
        # The token the vault names is the one pkcs11-tool sees.
        slots = self.kms.pkcs11_tool("--list-token-slots")
        self.assertIn(t["serial"], slots.out)
        self.assertIn(t["label"], slots.out)

    def test_status_text_names_the_vault_token_and_audit_head(self):
        self.kms.init()
        r = self.kms.ok("status")
        st = self.kms.status()
        self.assertRegex(r.out, rf"(?m)^vault\s+{re.escape(self.kms.vault)}$")
        self.assertRegex(r.out, rf"(?m)^id\s+{st['vault']['id']}$")
        self.assertRegex(r.out, rf"(?m)^token\s+\"{st['token']['label']}\" serial "
                                rf"{st['token']['serial']}")
        self.assertRegex(r.out, rf"(?m)^module\s+{re.escape(SOFTHSM_MODULE)}$")
        self.assertRegex(r.out, r"(?m)^audit log\s+2 records, head seq 2 hash [0-9a-f]{64}$")
        self.assertEqual(r.err, "")

    def test_version_prints_the_project_version_and_needs_no_vault_or_pin(self):
        with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
            version = re.search(r"project\(kmsctl VERSION (\S+)", f.read()).group(1)
        r = self.kms.run("version", unset=("KMSCTL_PIN_FILE",))
        self.assertEqual((r.rc, r.out, r.err), (0, f"kmsctl {version}\n", ""))
        r = self.kms.run("version", "--json", unset=("KMSCTL_PIN_FILE",))
        self.assertEqual(json.loads(r.out), {"version": version})
        self.assertFalse(os.path.exists(self.kms.vault_dir))

    def test_pin_from_env_and_pin_file_flag_both_work(self):
        self.kms.init()
        r = self.kms.run("status", unset=("KMSCTL_PIN_FILE",), env={"KMSCTL_PIN": self.kms.pin})
        self.assertOk(r)
        other = self.kms.write_secret_file("other-pin", "not-the-pin-4242")
        # --pin-file wins over KMSCTL_PIN_FILE.
        r = self.kms.run("--pin-file", self.kms.pin_file, "status",
                         env={"KMSCTL_PIN_FILE": other})
        self.assertOk(r)
        r = self.kms.run("--pin-file", other, "status")
        self.assertError(r, 6, "CKR_PIN_INCORRECT")
        # --vault wins over KMSCTL_VAULT.
        r = self.kms.run("--vault", self.kms.vault, "status",
                         env={"KMSCTL_VAULT": self.kms.path("nowhere.db")})
        self.assertOk(r)


class Errors(KmsTestCase):
    def test_wrong_pin_exits_6_naming_CKR_PIN_INCORRECT_and_never_echoes_the_pin(self):
        self.kms.init()
        wrong = "Wrong-Pin-31337"
        f = self.kms.write_secret_file("wrong", wrong)
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": f})
        self.assertError(r, 6, "CKR_PIN_INCORRECT", "KMSCTL_PIN")
        self.assertNotIn(wrong, r.err)
        self.assertNotIn(self.kms.pin, r.err)
        r = self.kms.run("status", unset=("KMSCTL_PIN_FILE",), env={"KMSCTL_PIN": wrong})
        self.assertError(r, 6, "CKR_PIN_INCORRECT")
        self.assertNotIn(wrong, r.err)

    def test_no_pin_and_no_terminal_exits_6_with_a_hint_naming_KMSCTL_PIN(self):
        self.kms.init()
        r = self.kms.run("status", unset=("KMSCTL_PIN_FILE", "KMSCTL_PIN"))
        self.assertError(r, 6, "no terminal")
        hint = next(l for l in r.err.splitlines() if l.startswith("hint:"))
        self.assertIn("KMSCTL_PIN", hint)

    def test_a_pin_shorter_than_4_characters_is_a_usage_error(self):
        self.kms.init()
        short = self.kms.write_secret_file("short", "123")
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": short})
        self.assertError(r, 2, "shorter than 4")
        r = self.kms.run("status", unset=("KMSCTL_PIN_FILE",), env={"KMSCTL_PIN": "12"})
        self.assertError(r, 2, "shorter than 4")
        r = self.kms.run("init", "--vault", self.kms.path("other", "v.db"),
                         env={"KMSCTL_PIN_FILE": short})
        self.assertError(r, 2, "shorter than 4")
        self.assertFalse(os.path.exists(self.kms.path("other", "v.db")))

    def test_a_missing_pin_file_is_a_usage_error_naming_the_file(self):
        self.kms.init()
        missing = self.kms.path("no-such-pin-file")
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": missing})
        self.assertError(r, 2, missing)

    def test_a_missing_vault_exits_6_with_a_hint_to_run_init(self):
        r = self.kms.run("status")
        self.assertError(r, 6, self.kms.vault, "`kmsctl init`")
        for args in (("audit", "verify"), ("audit", "list"), ("vault", "rekey")):
            r = self.kms.run(*args)
            self.assertError(r, 6, "`kmsctl init`")
        self.assertFalse(os.path.exists(self.kms.vault), "looking must not create a vault")

    def test_a_missing_module_exits_6_naming_it(self):
        r = self.kms.run("init", "--pkcs11-module", "/nonexistent.so", "--token-label", "x")
        self.assertError(r, 6, "/nonexistent.so", "--pkcs11-module")
        self.assertFalse(os.path.exists(self.kms.vault))

    def test_a_file_that_is_not_a_pkcs11_module_exits_6(self):
        r = self.kms.run("init", "--pkcs11-module", "/bin/true", "--token-label", "x")
        self.assertError(r, 6, "/bin/true")
        self.assertFalse(os.path.exists(self.kms.vault))

    def test_a_missing_token_label_exits_6(self):
        # A module with an empty token directory: the label names nothing.
        hsm = self.kms.path("hsm")
        os.makedirs(os.path.join(hsm, "tokens"))
        conf = os.path.join(hsm, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {hsm}/tokens\nobjectstore.backend = file\n")
        r = self.kms.run("init", "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "absent",
                         env={"SOFTHSM2_CONF": conf})
        self.assertError(r, 6, '"absent"')
        self.assertFalse(os.path.exists(self.kms.vault))

    def test_a_vault_whose_token_directory_is_gone_exits_6_naming_it(self):
        self.kms.init()
        shutil.rmtree(self.kms.token_dir)
        r = self.kms.run("status")
        self.assertError(r, 6, self.kms.token_dir)

    def test_a_vault_of_random_bytes_exits_5_as_damaged(self):
        self.kms.init()
        self.kms.checkpoint()  # the file alone is the vault: no WAL to fall back on
        size = os.path.getsize(self.kms.vault)
        with open(self.kms.vault, "wb") as f:
            f.write(os.urandom(size))
        r = self.kms.run("status")
        self.assertError(r, 5, "damaged", self.kms.vault)
        r = self.kms.run("audit", "verify")
        self.assertError(r, 5, "damaged")

    def test_a_vault_truncated_to_half_exits_5_as_damaged(self):
        self.kms.init()
        for _ in range(5):  # a few pages of log
            self.kms.ok("status")
        self.kms.checkpoint()  # every page in the file, none left in a WAL
        size = os.path.getsize(self.kms.vault)
        os.truncate(self.kms.vault, size // 2)
        for args in (("status",), ("audit", "verify"), ("audit", "list")):
            r = self.kms.run(*args)
            self.assertError(r, 5, "damaged")

    def test_an_empty_vault_file_is_not_taken_for_a_vault(self):
        self.kms.init()
        self.kms.checkpoint()
        os.truncate(self.kms.vault, 0)
        r = self.kms.run("status")
        self.assertIn(r.rc, (5, 6), r.show())
        self.assertError(r, r.rc, self.kms.vault)

    def test_a_sqlite_file_that_is_not_a_vault_exits_5(self):
        other = self.kms.path("other.db")
        self.kms.sql("CREATE TABLE t (x)", db=other)
        r = self.kms.run("status", env={"KMSCTL_VAULT": other})
        self.assertError(r, 5, "not a kmsctl vault")

    def test_a_vault_from_a_newer_schema_exits_6_saying_newer(self):
        self.kms.init()
        self.kms.sql("PRAGMA user_version=99")
        before = self.kms.vault_digest()
        r = self.kms.run("status")
        self.assertError(r, 6, "newer", "99")
        self.assertEqual(self.kms.vault_digest(), before, "a newer vault is left as it was")

    def test_unknown_commands_and_bad_flags_are_usage_errors(self):
        for args in (("bogus",), ("status", "--bogus"), ("audit",), ("audit", "frobnicate"),
                     ("audit", "export"), ("audit", "list", "--limit", "0"),
                     ("audit", "list", "--outcome", "maybe"), ("completion", "tcsh"),
                     ("init", "--pin", "1234")):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertError(r, 2)
        self.assertFalse(os.path.exists(self.kms.vault_dir))

    def test_an_unknown_command_is_named_in_the_error(self):
        r = self.kms.run("stauts")
        self.assertError(r, 2, "stauts")

    def test_help_goes_to_stdout_and_exits_0(self):
        r = self.kms.run("--help")
        self.assertEqual(r.rc, 0, r.show())
        self.assertIn("audit", r.out)
        r = self.kms.run("audit", "list", "--help")
        self.assertEqual(r.rc, 0, r.show())
        self.assertIn("--action", r.out)


# The command tree as help prints it (kmsctl builds only the group a command names; help, and
# anything it must reject, still see all of it).
TOP_LEVEL = ("init", "status", "audit", "key", "encrypt", "decrypt", "re-encrypt", "data-key",
             "random", "sign", "verify", "mac", "verify-mac", "file", "secret", "exec", "maintain", "vault", "agent", "grant", "policy",
             "serve", "config", "version", "completion", "manpage", "help")
SECRET_VERBS = ("create", "get", "put", "list", "describe", "versions", "delete", "restore",
                "rotate", "set-rotation", "set-policy", "get-policy")
KEY_VERBS = ("create", "list", "describe", "enable", "disable", "rotate", "cancel-deletion",
             "versions", "set-rotation", "schedule-deletion", "tag", "untag", "set-policy",
             "get-policy", "public", "import-params", "import", "specs", "alias")
POLICY_VERBS = ("validate", "check")
CONFIG_VERBS = ("list", "get", "set", "unset")


def subcommands(help_text):
    """The names listed under `Subcommands:` in a CLI11 help text, in order."""
    _, sep, listing = help_text.partition("Subcommands:\n")
    return re.findall(r"(?m)^  (\S+)", listing) if sep else []


class CommandLine(KmsTestCase):
    def run_bare(self, *args):
        """kmsctl without KMSCTL_VAULT and KMSCTL_PIN_FILE: only the command line names them."""
        return self.kms.run(*args, unset=("KMSCTL_VAULT", "KMSCTL_PIN_FILE"))

    def test_global_options_before_the_command_work_in_both_spellings(self):
        self.kms.init()
        key_id = self.kms.ok("key", "create", "--alias", "alias/global-opts").out.strip()
        value = self.kms.write_secret_file("value", "global-opts-value")
        self.kms.ok("secret", "create", "app/global-opts", "--value-file", value)
        vault, pin = self.kms.vault, self.kms.pin_file
        # Without them kmsctl does not find this vault (HOME holds none).
        self.assertError(self.run_bare("key", "list"), 6)
        for args in (("--vault", vault, "--pin-file", pin, "key", "list"),
                     ("--vault=" + vault, "--pin-file=" + pin, "key", "list"),
                     ("--pin-file", pin, "--vault=" + vault, "key", "list"),
                     # After the group, and after the verb: the group still gets them.
                     ("key", "--vault", vault, "--pin-file", pin, "list"),
                     ("key", "list", "--vault", vault, "--pin-file", pin)):
            with self.subTest(args=args):
                r = self.run_bare(*args)
                self.assertOk(r)
                self.assertIn(key_id, r.out)
                self.assertIn("alias/global-opts", r.out)
        r = self.kms.run("--vault", vault, "key", "list", "--json", unset=("KMSCTL_VAULT",))
        self.assertOk(r)
        self.assertIn(key_id, [k["key_id"] for k in json.loads(r.out)["items"]])
        for args in (("--vault=" + vault, "--pin-file=" + pin, "status"),
                     ("--vault=" + vault, "--pin-file", pin, "status", "--json")):
            with self.subTest(args=args):
                r = self.run_bare(*args)
                self.assertOk(r)
                self.assertIn(vault, r.out)
        for args in (("--pin-file", pin, "--vault", vault, "secret", "list"),
                     ("--pin-file=" + pin, "--vault=" + vault, "secret", "list"),
                     ("secret", "list", "--pin-file", pin, "--vault", vault)):
            with self.subTest(args=args):
                r = self.run_bare(*args)
                self.assertOk(r)
                self.assertRegex(r.out, r"(?m)^app/global-opts\s")
        r = self.run_bare("--vault", vault, "--pin-file", pin, "secret", "get", "app/global-opts")
        self.assertEqual((r.rc, r.out), (0, "global-opts-value\n"), r.show())  # the file's line
        # An option's value is not taken for the command, even when it is spelled like one: a
        # vault file named `secret` and a PIN file named `key`, given by relative paths.
        odd = self.kms.path("odd")
        os.mkdir(odd, 0o700)
        self.kms.ok("init", env={"KMSCTL_VAULT": os.path.join(odd, "secret")})
        self.kms.write_secret_file(os.path.join("odd", "key"), self.kms.pin)
        for args, expect in ((("--vault", "secret", "--pin-file", "key", "status"), "secret"),
                             (("--pin-file", "key", "--vault", "secret", "key", "list"), "KEY ID"),
                             (("--vault", "secret", "--pin-file", "key", "secret", "list"), "NAME")):
            with self.subTest(args=args):
                r = self.kms.run(*args, cwd=odd, unset=("KMSCTL_VAULT", "KMSCTL_PIN_FILE"))
                self.assertOk(r)
                self.assertIn(expect, r.out)
        # The options really name the vault: another path is another (missing) vault.
        other = self.kms.path("elsewhere.db")
        r = self.run_bare("--vault", other, "--pin-file", pin, "secret", "list")
        self.assertError(r, 6, other)

    def test_help_of_a_group_lists_every_one_of_its_subcommands(self):
        for group, verbs in (("secret", SECRET_VERBS), ("key", KEY_VERBS),
                             ("policy", POLICY_VERBS), ("config", CONFIG_VERBS)):
            for args in ((group, "--help"), ("--vault", self.kms.vault, group, "--help"),
                         ("--vault=" + self.kms.vault, group, "-h")):
                with self.subTest(args=args):
                    r = self.kms.run(*args)
                    self.assertEqual((r.rc, r.err), (0, ""), r.show())
                    self.assertEqual(subcommands(r.out), list(verbs))
        self.assertFalse(os.path.exists(self.kms.vault_dir), "help needs no vault")

    def test_help_lists_every_top_level_command(self):
        for args in (("--help",), ("-h",), ("--vault", self.kms.vault, "--help"),
                     ("--pin-file=" + self.kms.pin_file, "--help")):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertEqual((r.rc, r.err), (0, ""), r.show())
                self.assertEqual(subcommands(r.out), list(TOP_LEVEL))
        # --help-all shows every group's subcommands too.
        r = self.kms.run("--help-all")
        self.assertEqual(r.rc, 0, r.show())
        for verb in SECRET_VERBS + KEY_VERBS:
            self.assertRegex(r.out, rf"(?m)^\s+{re.escape(verb)}\s", verb)

    def test_every_command_and_verb_is_reached_by_its_own_name(self):
        # Each builds only its own group (and verb): the name must lead to that command's help.
        words = [(c,) for c in TOP_LEVEL]
        words += [("secret", v) for v in SECRET_VERBS] + [("key", v) for v in KEY_VERBS]
        words += [("policy", v) for v in POLICY_VERBS]
        words += [("config", v) for v in CONFIG_VERBS]
        for w in words:
            with self.subTest(command=" ".join(w)):
                r = self.kms.run("--vault", self.kms.vault, *w, "--help")
                self.assertEqual((r.rc, r.err), (0, ""), r.show())
                self.assertRegex(r.out, rf"(?m)^Usage: kmsctl {re.escape(' '.join(w))}( |$)")

    def test_a_verb_help_shows_that_verbs_options(self):
        r = self.kms.run("secret", "get", "--help")
        self.assertEqual(r.rc, 0, r.show())
        self.assertIn("--version-id", r.out)
        self.assertIn("--stage", r.out)
        r = self.kms.run("--vault", self.kms.vault, "key", "create", "--help")
        self.assertEqual(r.rc, 0, r.show())
        self.assertIn("--alias", r.out)

    def test_an_unknown_command_or_verb_exits_2_naming_it(self):
        for args, word in ((("nosuchcommand",), "nosuchcommand"),
                           (("--vault", self.kms.vault, "nosuchcommand"), "nosuchcommand"),
                           (("--vault=" + self.kms.vault, "nosuchcommand", "list"),
                            "nosuchcommand"),
                           (("key", "nosuchverb"), "nosuchverb"),
                           (("--vault", self.kms.vault, "key", "nosuchverb"), "nosuchverb"),
                           (("secret", "nosuchverb", "app/x"), "nosuchverb"),
                           (("key", "alias", "nosuchverb"), "nosuchverb")):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertError(r, 2, word)
        # A group without its verb, and a verb without its argument, are usage errors too.
        for args in (("key",), ("secret",), ("secret", "get"), ("key", "describe")):
            with self.subTest(args=args):
                self.assertError(self.kms.run(*args), 2)
        self.assertFalse(os.path.exists(self.kms.vault_dir), "nothing was created")


if __name__ == "__main__":
    kmsenv.main()
