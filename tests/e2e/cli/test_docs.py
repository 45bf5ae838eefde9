"""Shell completions and the man page: generated from the command tree, committed, and working
in the real shells."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase, SOURCE_DIR

GENERATED = [
    (("completion", "bash"), "completions/kmsctl.bash"),
    (("completion", "zsh"), "completions/_kmsctl"),
    (("completion", "fish"), "completions/kmsctl.fish"),
    (("manpage",), "man/kmsctl.1"),
]

LEAF_COMMANDS = ["init", "status", "version", "completion", "manpage", "audit list",
                 "audit verify", "audit export", "vault backup", "vault rekey",
                 "vault change-pin", "vault restore", "config list", "config get", "config set",
                 "config unset"]


class Docs(KmsTestCase):
    def generate(self, args, name):
        r = self.kms.run(*args, unset=("KMSCTL_PIN_FILE",))
        self.assertEqual((r.rc, r.err), (0, ""), r.show())
        path = self.kms.path(os.path.basename(name))
        with open(path, "w") as f:
            f.write(r.out)
        return r.out, path

    def test_committed_completions_and_man_page_match_the_generator(self):
        for args, rel in GENERATED:
            with self.subTest(file=rel):
                regen = f"build/kmsctl {' '.join(args)} > {rel}"
                committed = os.path.join(SOURCE_DIR, rel)
                self.assertTrue(os.path.exists(committed),
                                f"{rel} is missing; generate it with `{regen}` and commit it")
                out, _ = self.generate(args, rel)
                with open(committed) as f:
                    self.assertTrue(f.read() == out,
                                    f"{rel} differs from `kmsctl {' '.join(args)}`; "
                                    f"regenerate it with `{regen}` and commit it")
        self.assertFalse(os.path.exists(self.kms.vault_dir), "generating needs no vault")

    def bash_complete(self, script, *words):
        """COMPREPLY of _kmsctl for a command line whose last word is being completed."""
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
        cmd = (f"source '{script}'; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
               f"_kmsctl; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
        p = subprocess.run(["bash", "--norc", "--noprofile", "-c", cmd], capture_output=True,
                           text=True, timeout=60, cwd=self.kms.root)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        return p.stdout.split()

    def test_bash_completion_completes_commands_and_flags_in_a_real_bash(self):
        _, script = self.generate(("completion", "bash"), "kmsctl.bash")
        p = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                            f"source '{script}'; complete -p kmsctl"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.stdout.strip(), "complete -F _kmsctl kmsctl", p.stderr)
        self.assertEqual(self.bash_complete(script, "kmsctl", "au"), ["audit"])
        self.assertEqual(self.bash_complete(script, "kmsctl", "audit", "v"), ["verify"])
        self.assertEqual(self.bash_complete(script, "kmsctl", "audit", "list", "--ac"),
                         ["--action"])
        self.assertEqual(self.bash_complete(script, "kmsctl", "vault", "re"),
                         ["rekey", "reset-pin", "restore"])
        top = self.bash_complete(script, "kmsctl", "")
        for c in ("init", "status", "audit", "vault", "version", "completion", "manpage"):
            self.assertIn(c, top)
        # Global flags before the command do not confuse it.
        self.assertEqual(self.bash_complete(script, "kmsctl", "--vault", "x.db", "audit", "ex"),
                         ["export"])
        # A file-taking flag completes file names.
        os.mkdir(self.kms.path("backups"))
        self.assertEqual(self.bash_complete(script, "kmsctl", "--vault", "back"), ["backups"])

    def test_zsh_completion_parses_and_offers_commands_and_flags(self):
        if not shutil.which("zsh"):
            self.skipTest("zsh is not installed (apt-get install zsh)")
        _, script = self.generate(("completion", "zsh"), "_kmsctl")
        p = subprocess.run(["zsh", "-n", script], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)

        # Outside a completion widget: stand-ins for _describe/compadd/_files that print the
        # candidates offered (zsh itself would then filter them by the prefix).
        def offered(line, prefix):
            words = line.split()
            harness = ("_describe() { print -l -- ${(P)2%%:*}; }\n"
                       "compadd() { [[ $1 == -- ]] && shift; print -l -- \"$@\"; }\n"
                       "_files() { print '<files>'; }\n"
                       "words=(${=1}); CURRENT=$2; PREFIX=$3\n"
                       f"source '{script}'\n")
            q = subprocess.run(["zsh", "-f", "-c", harness, "zsh", line, str(len(words)), prefix],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(q.returncode, 0, q.stderr)
            return q.stdout.split()

        self.assertIn("audit", offered("kmsctl au", "au"))
        self.assertIn("verify", offered("kmsctl audit v", "v"))
        self.assertNotIn("backup", offered("kmsctl audit v", "v"))
        self.assertIn("--action", offered("kmsctl audit list --ac", "--ac"))
        self.assertEqual(offered("kmsctl --vault x", "x"), ["<files>"])

    def test_fish_completion_parses_and_completes_in_a_real_fish(self):
        if not shutil.which("fish"):
            self.skipTest("fish is not installed (apt-get install fish)")
        _, script = self.generate(("completion", "fish"), "kmsctl.fish")
        p = subprocess.run(["fish", "--no-config", "-n", script], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)

        def complete(line):
            q = subprocess.run(["fish", "--no-config", "-c",
                                f"source '{script}'; complete -C '{line}'"],
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "HOME": self.kms.home})
            self.assertEqual(q.returncode, 0, q.stderr)
            return [l.split("\t")[0] for l in q.stdout.splitlines()]

        self.assertEqual(complete("kmsctl au"), ["audit"])
        self.assertEqual(complete("kmsctl audit v"), ["verify"])
        self.assertEqual(complete("kmsctl audit list --ac"), ["--action"])

    def test_man_page_renders_without_warnings_and_documents_every_command(self):
        page, path = self.generate(("manpage",), "kmsctl.1")
        self.assertTrue(page.splitlines()[1].startswith(".TH KMSCTL 1 "))
        for cmd in LEAF_COMMANDS:
            roff = re.escape("kmsctl " + cmd.replace("-", "\\-"))
            self.assertRegex(page, rf"(?m)^\.SS {roff}\b", f"no section for {cmd}")
        for section in ("EXIT STATUS", "ENVIRONMENT", "FILES"):
            self.assertIn(f".SH {section}", page)
        for code in range(1, 7):
            self.assertRegex(page, rf"(?m)^\.B {code}$")
        if shutil.which("groff"):
            p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual((p.returncode, p.stderr), (0, ""))


if __name__ == "__main__":
    kmsenv.main()
