"""The command line people expect: -q, --version, help COMMAND, a command or group given without
its verb, typos answered with a suggestion, `exec` without `--`, and a wrong PIN in words."""

import os
import pty
import re
import select
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase, SOFTHSM_MODULE, USAGE, UNAVAILABLE


class Quiet(KmsTestCase):
    def test_quiet_leaves_data_on_stdout_and_nothing_on_stderr(self):
        self.kms.init()
        # Without -q these commands confirm on stderr; with -q (or KMSCTL_QUIET=1) they do not.
        r = self.kms.ok("secret", "create", "app/loud", "--generate")
        self.assertEqual(r.out, "")
        self.assertIn("created secret app/loud", r.err)
        r = self.kms.ok("-q", "secret", "create", "app/db", "--generate")
        self.assertEqual((r.out, r.err), ("", ""))
        r = self.kms.ok("secret", "put", "app/db", "--value-stdin", "--quiet", input="v2-value")
        self.assertEqual((r.out, r.err), ("", ""))
        r = self.kms.ok("secret", "put", "app/db", "--value-stdin", env={"KMSCTL_QUIET": "1"},
                        input="v3-value")
        self.assertEqual((r.out, r.err), ("", ""))
        # Data still goes to stdout.
        r = self.kms.ok("-q", "secret", "get", "app/db")
        self.assertEqual((r.out, r.err), ("v3-value", ""))
        r = self.kms.ok("key", "create", "--alias", "alias/q", "-q", "--json")
        self.assertEqual(r.err, "")
        self.assertEqual(r.json()["aliases"], ["alias/q"])
        r = self.kms.ok("-q", "key", "schedule-deletion", "alias/q", "--pending-days", "7")
        self.assertEqual((r.out, r.err), ("", ""))
        r = self.kms.ok("key", "cancel-deletion", "alias/q")
        r = self.kms.ok("-q", "sign", "--help")  # help is data: asked for
        self.assertIn("Usage", r.out)
        # Errors are never silenced.
        r = self.kms.run("-q", "secret", "get", "app/none")
        self.assertError(r, 3, "kmsctl: error: ", "app/none")

    def test_maintain_with_nothing_due_prints_nothing_under_quiet(self):
        self.kms.init()
        r = self.kms.ok("maintain", "-q")
        self.assertEqual((r.rc, r.out, r.err), (0, "", ""))
        r = self.kms.ok("maintain")
        self.assertEqual((r.out, r.err), ("nothing is due\n", ""))


class HelpAndVersion(KmsTestCase):
    def test_version_flag_prints_what_version_prints(self):
        a = self.kms.run("--version", unset=("KMSCTL_PIN_FILE",))
        b = self.kms.run("version")
        self.assertEqual((a.rc, a.err), (0, ""), a.show())
        self.assertRegex(a.out, r"^kmsctl \d+\.\d+\.\d+\n$")
        self.assertEqual(a.out, b.out)

    def test_help_command_is_the_commands_help(self):
        for words in (("secret", "get"), ("vault", "restore"), ("secret",), ("status",)):
            with self.subTest(words=words):
                a = self.kms.run("help", *words)
                b = self.kms.run(*words, "--help")
                self.assertEqual((a.rc, a.err), (0, ""), a.show())
                self.assertEqual(a.out, b.out)
                self.assertIn("kmsctl " + " ".join(words), a.out)
        a = self.kms.run("help")
        self.assertEqual((a.rc, a.err, a.out), (0, "", self.kms.run("--help").out))
        self.assertIn("help", a.out)
        r = self.kms.run("help", "secrte", "get")
        self.assertError(r, USAGE, "unknown command: secrte",
                         hint="did you mean `kmsctl secret get`?")
        self.assertFalse(os.path.exists(self.kms.vault_dir), "help needs no vault")

    def test_a_group_without_its_command_prints_its_help_on_stderr_and_exits_2(self):
        # The usage error first (its format as every error's), then the help of that level.
        r = self.kms.run()
        self.assertError(r, USAGE, hint="choose one of the commands below: `kmsctl COMMAND`")
        self.assertTrue(r.err.startswith("kmsctl: error: `kmsctl` needs a command\nhint: "))
        self.assertIn("\nUsage: kmsctl [OPTIONS] SUBCOMMAND\n", r.err)
        for word in ("secret", "vault", "maintain", "help"):
            self.assertRegex(r.err, rf"(?m)^  {word} ")
        r = self.kms.run("secret")
        self.assertError(r, USAGE, hint="`kmsctl secret COMMAND`")
        self.assertTrue(r.err.startswith("kmsctl: error: `kmsctl secret` needs a command\n"))
        self.assertIn("\nUsage: secret [OPTIONS] SUBCOMMAND\n", r.err)
        for verb in ("create", "get", "rotate", "set-policy"):
            self.assertRegex(r.err, rf"(?m)^  {verb} ")
        r = self.kms.run("--vault", "x.db", "key", "alias")
        self.assertError(r, USAGE)
        self.assertTrue(r.err.startswith("kmsctl: error: `kmsctl key alias` needs a command\n"))
        for verb in ("create", "update", "delete", "list"):
            self.assertRegex(r.err, rf"(?m)^  {verb} ")
        # A verb that runs without a subcommand is not one of these.
        r = self.kms.run("secret", "get")
        self.assertError(r, USAGE)
        self.assertNotIn("needs a command", r.err)


class Examples(KmsTestCase):
    def subcommands(self, words):
        r = self.kms.run(*words, "--help")
        self.assertEqual((r.rc, r.err), (0, ""), r.show())
        if "\nSubcommands:\n" not in r.out:
            return r.out, []
        listing = r.out.split("\nSubcommands:\n", 1)[1].split("\n\n", 1)[0]
        return r.out, [l.split()[0] for l in listing.splitlines() if l.startswith("  ") and
                       not l.startswith("   ")]

    def test_every_leaf_commands_help_ends_with_its_examples(self):
        leaves, todo = [], [()]
        while todo:
            words = todo.pop()
            out, subs = self.subcommands(words)
            todo.extend(words + (s,) for s in subs)
            if not subs:
                leaves.append((words, out))
        self.assertGreater(len(leaves), 60)
        for words, out in leaves:
            with self.subTest(command=" ".join(words)):
                self.assertIn("\nExamples:\n", out)
                lines = out.split("\nExamples:\n", 1)[1].splitlines()
                lines = [l for l in lines if l.strip()]
                self.assertTrue(1 <= len(lines) <= 2, lines)
                for line in lines:
                    self.assertTrue(line.startswith("  "), line)
                    self.assertIn("kmsctl " + " ".join(words), line)
        # Every path of the table is a command: the man page refuses to be made otherwise, and
        # shows the examples, one section per group.
        page = self.kms.ok("manpage").out
        self.assertIn(".SH EXAMPLES\n.SS init\n", page)
        self.assertIn("kmsctl secret get app/db\\-password\n", page)


class Typos(KmsTestCase):
    def test_a_misspelt_verb_group_or_option_gets_a_suggestion(self):
        for args, what, hint in (
                (("secret", "gte", "app/db"), "unknown command or argument: gte",
                 "did you mean `kmsctl secret get`?"),
                (("secrte", "get", "app/db"), "unknown command or argument: secrte",
                 "did you mean `kmsctl secret get`?"),
                (("secrets", "list"), "unknown command or argument: secrets",
                 "did you mean `kmsctl secret list`?"),
                (("vault", "chekc-token"), "unknown command or argument: chekc-token",
                 "did you mean `kmsctl vault check-token`?"),
                (("encrypt", "--key", "alias/a", "--contxt", "a=b"),
                 "`kmsctl encrypt` has no option --contxt", "did you mean `--context`?"),
                (("status", "--jsno"), "`kmsctl status` has no option --jsno",
                 "did you mean `--json`?"),
                (("status", "--vualt", "x"), "`kmsctl status` has no option --vualt",
                 "did you mean `--vault`?")):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertError(r, USAGE, f"kmsctl: error: {what}\n", hint=hint)
        # Nothing close: no suggestion.
        r = self.kms.run("secret", "zzzzzz")
        self.assertError(r, USAGE, "unknown command or argument: zzzzzz")
        self.assertNotIn("did you mean", r.err)
        self.assertFalse(os.path.exists(self.kms.vault_dir), "a usage error needs no vault")


class ExecDashes(KmsTestCase):
    def test_exec_without_dashes_says_to_put_them(self):
        self.kms.init()
        self.kms.ok("-q", "secret", "create", "app/db", "--generate")
        before = self.kms.audit_count()
        for args in (("exec", "--secret", "app/db", "sh", "-c", "echo hi"),
                     ("exec", "--secret", "app/db", "env", "-q"),
                     ("exec", "--secret", "app/db", "ls", "--stage", "previous")):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertError(r, USAGE, "options after the command",
                                 hint="put `--` before the command")
                self.assertNotIn("echo hi", r.err)
        self.assertEqual(self.kms.audit_count(), before, "no secret was read")
        r = self.kms.ok("exec", "--secret", "app/db=X", "--", "sh", "-c", 'test -n "$X"; echo ok')
        self.assertEqual(r.out, "ok\n")


class WrongPin(KmsTestCase):
    WRONG = "wrong-Pin-77a1c3"

    def test_a_wrong_pin_is_said_in_words_logged_and_never_echoed(self):
        self.kms.init()
        log = self.kms.path("syslog")
        wrong = self.kms.write_secret_file("wrong-pin", self.WRONG)
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": wrong, "KMSCTL_TEST_SYSLOG": log})
        self.assertError(r, UNAVAILABLE, "kmsctl: error: the PIN is wrong: the token refused it",
                         hint="check the PIN (--pin-file, KMSCTL_PIN_FILE or KMSCTL_PIN)")
        self.assertNotIn(self.WRONG, r.err + r.out)
        with open(log) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1, lines)
        uid = os.getuid()
        self.assertRegex(lines[0], rf"^refused token login: uid {uid} pid \d+ vault "
                                   rf"{re.escape(self.kms.vault)}: the PIN is wrong")
        self.assertNotIn(self.WRONG, lines[0])
        self.assertNotIn(self.kms.pin, lines[0])
        # The right PIN logs nothing.
        self.kms.ok("status", env={"KMSCTL_TEST_SYSLOG": log})
        with open(log) as f:
            self.assertEqual(len(f.read().splitlines()), 1)

    def prompted(self, *pins):
        """Runs `kmsctl status --json` on a pseudo-terminal with no PIN given, typing `pins` at
        its prompts (each once the prompt turned echo off); returns (exit code, what it showed)."""
        env = {k: v for k, v in self.kms.base_env().items() if k != "KMSCTL_PIN_FILE"}
        env["KMSCTL_TEST_SYSLOG"] = self.kms.path("syslog")
        pid, fd = pty.fork()
        if pid == 0:  # the child: a new session whose controlling terminal is the pty
            os.execve(kmsenv.KMSCTL, ["kmsctl", "status", "--json"], env)
        shown = b""
        try:
            for i, pin in enumerate(pins):
                # Its i-th prompt shown, and echo off (the PIN typed before would be flushed).
                deadline = time.monotonic() + 60
                while (shown.count(b"token user PIN: ") <= i or
                       termios.tcgetattr(fd)[3] & termios.ECHO):
                    self.assertLess(time.monotonic(), deadline, shown)
                    r, _, _ = select.select([fd], [], [], 0.01)
                    if r:
                        shown += os.read(fd, 4096)
                os.write(fd, pin.encode() + b"\n")
            while True:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
        finally:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:  # still waiting for a PIN: the test failed
                os.kill(pid, 9)
                _, status = os.waitpid(pid, 0)
            os.close(fd)
        return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")

    def test_the_prompt_gives_three_tries_and_logs_each_refusal(self):
        self.kms.init()
        rc, shown = self.prompted("wrong-1-aaaa", "wrong-2-bbbb", self.kms.pin)
        self.assertEqual(rc, 0, shown)
        self.assertEqual(shown.count("token user PIN: "), 3, shown)
        self.assertEqual(shown.count("the PIN is wrong: the token refused it "
                                     "(CKR_PIN_INCORRECT); try again"), 2, shown)
        self.assertIn('"audit_records"', shown)
        rc, shown = self.prompted("wrong-1-aaaa", "wrong-2-bbbb", "wrong-3-cccc")
        self.assertEqual(rc, UNAVAILABLE, shown)
        self.assertEqual(shown.count("token user PIN: "), 3, shown)
        self.assertIn("kmsctl: error: the PIN is wrong", shown)
        for pin in ("wrong-1-aaaa", "wrong-2-bbbb", "wrong-3-cccc", self.kms.pin):
            self.assertNotIn(pin, shown)
        with open(self.kms.path("syslog")) as f:
            self.assertEqual(len(f.read().splitlines()), 5)

    def test_the_so_pin_procedure_of_the_locked_pin_hint_sets_a_new_user_pin(self):
        self.kms.init()
        self.assertIsNotNone(self.kms.so_pin, "init printed the SO PIN")
        self.kms.ok("-q", "secret", "create", "app/db", "--generate")
        value = self.kms.ok("secret", "get", "app/db").out
        new_pin = "e2e-New-Pin-31d9"
        so_file = self.kms.write_secret_file("so-pin", self.kms.so_pin)
        newfile = self.kms.write_secret_file("new-pin", new_pin)
        # What the hint of a locked PIN says to run.
        r = self.kms.run("-q", "vault", "reset-pin", "--so-pin-file", so_file, "--new-pin-file",
                         newfile)
        self.assertEqual((r.rc, r.out, r.err), (0, "", ""), r.show())
        r = self.kms.run("status")
        self.assertError(r, UNAVAILABLE, "the PIN is wrong")
        r = self.kms.ok("secret", "get", "app/db", env={"KMSCTL_PIN_FILE": newfile})
        self.assertEqual(r.out, value)

if __name__ == "__main__":
    kmsenv.main()
