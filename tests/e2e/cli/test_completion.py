"""Shell completion that knows names: TAB in a real bash, zsh and fish, each in a pseudo-terminal,
completes commands, options (global ones after the command words too), the allowed values of an
option, file names, and the key ids, aliases and secret names of a real vault, without a PIN,
without an audit record and without writing anything where the vault is. `kmsctl __complete`,
which the scripts call for names, prints nothing and exits 0 on any problem."""

import fcntl
import hashlib
import os
import re
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase, KMSCTL

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]|\x1b\][^\x07]*\x07|"
                  r"\x1b[78DEHMc]|[\x07\x0f\x0e\r]")
WAIT = 60  # seconds to wait for what a shell must print before the test fails (not a measure)


class Terminal:
    """A shell in a pseudo-terminal of its own (its controlling terminal): type, read the screen's
    bytes as they come (escape sequences removed)."""

    def __init__(self, argv, env, cwd):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))

        def controlling_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=cwd, preexec_fn=controlling_terminal, close_fds=True)
        os.close(slave)
        self.fd = master
        self.raw = b""

    def text(self):
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def type(self, keys):
        os.write(self.fd, keys.encode())

    def read_until(self, pattern, after=0):
        """Reads until `pattern` (a regex) matches the screen's text from offset `after`; returns
        the match. Fails the test when the shell does not print it (or exits)."""
        deadline = time.monotonic() + WAIT
        while True:
            m = re.compile(pattern).search(self.text(), after)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the shell did not print {pattern!r}; it printed:\n"
                                     f"{self.text()[after:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the shell exited; it printed:\n{self.text()!r}")
                self.raw += chunk

    def close(self):
        if self.fd < 0:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=WAIT)
        os.close(self.fd)
        self.fd = -1


def tree_state(directory):
    """Every file and directory under `directory`: its type, size, mtime and content digest."""
    state = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            digest = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            state[os.path.relpath(p, directory)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return state


class Completion(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.scripts = self.kms.path("completions")
        os.mkdir(self.scripts)
        for shell, name in (("bash", "kmsctl.bash"), ("zsh", "_kmsctl"), ("fish", "kmsctl.fish")):
            r = self.kms.run("completion", shell, unset=("KMSCTL_PIN_FILE",))
            self.assertEqual((r.rc, r.err), (0, ""), r.show())
            with open(os.path.join(self.scripts, name), "w") as f:
                f.write(r.out)
        self.work = self.kms.path("work")  # the shells' current directory
        os.mkdir(self.work)

    def make_vault(self):
        """A vault with two keys (one with an alias) and two secrets; returns the key ids."""
        self.kms.init()
        main = self.kms.ok("key", "create", "--alias", "alias/app-main").out.strip()
        other = self.kms.ok("key", "create").out.strip()
        self.kms.ok("-q", "secret", "create", "db-password", "--generate")
        self.kms.ok("-q", "secret", "create", "app/token", "--generate")
        return main, other

    def complete(self, *args, **kw):
        """`kmsctl __complete ARGS`, as the scripts run it: no PIN in its environment."""
        return self.kms.run("__complete", *args, unset=("KMSCTL_PIN_FILE",), **kw)

    def audit_count_of_a_copy(self):
        """The number of audit records, read from a copy of the vault (the vault is not opened)."""
        d = tempfile.mkdtemp(dir=self.kms.root)
        for suffix in ("", "-wal"):
            if os.path.exists(self.kms.vault + suffix):
                shutil.copy(self.kms.vault + suffix, os.path.join(d, "v.db" + suffix))
        con = sqlite3.connect(os.path.join(d, "v.db"))
        try:
            return con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        finally:
            con.close()
            shutil.rmtree(d)

    def shell_env(self, term="dumb"):
        """No PIN anywhere, a private HOME and XDG directories, kmsctl first on PATH."""
        home = self.kms.path("shell-home")
        os.makedirs(home, exist_ok=True)
        env = {"PATH": os.path.dirname(os.path.abspath(KMSCTL)) + ":" +
                       os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": home, "TERM": term, "LANG": "C.UTF-8",
               "KMSCTL_VAULT": self.kms.vault, "TMPDIR": self.kms.root}
        for xdg in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
                    "XDG_RUNTIME_DIR"):
            env[xdg] = os.path.join(home, xdg.lower())
            os.makedirs(env[xdg], mode=0o700, exist_ok=True)
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        return env

    def start(self, shell):
        if shell != "bash" and not shutil.which(shell):
            self.skipTest(f"{shell} is not installed (apt-get install {shell})")
        # fish shows several candidates (its pager) only on a terminal that can move the cursor.
        env = self.shell_env("xterm-256color" if shell == "fish" else "dumb")
        if shell == "bash":
            if not os.path.exists(BASH_COMPLETION):
                self.skipTest("bash-completion is not installed (apt-get install bash-completion)")
            t = Terminal(["bash", "--norc", "--noprofile", "-i"], env, self.work)
            setup = (f"source {BASH_COMPLETION}; source {self.scripts}/kmsctl.bash; "
                     "bind 'set show-all-if-ambiguous on'; bind 'set completion-query-items 0'; "
                     "bind 'set page-completions off'; bind 'set bell-style none'; "
                     "PS1='READY''> '\n")
        elif shell == "zsh":
            t = Terminal(["zsh", "-f", "-i"], env, self.work)
            setup = (f"fpath=({self.scripts} $fpath); autoload -Uz compinit; compinit -u -D; "
                     "unsetopt beep list_ambiguous; LISTMAX=1000; PS1='READY''> '\n")
        else:
            t = Terminal(["fish", "--no-config", "-i"], env, self.work)
            setup = (f"source {self.scripts}/kmsctl.fish; "
                     "function fish_prompt; printf 'READY> '; end; function fish_greeting; end; "
                     "fish_default_key_bindings; set -g fish_autosuggestion_enabled 0\n")
        self.addCleanup(t.close)
        t.type(setup)
        self.mark = self.sync(t, 0).end()
        return t

    def tab(self, t, line, expect, shell):
        """Types `line` and TAB, waits for `expect` (a regex) after it, then clears the line.
        Returns what the shell printed."""
        start = len(t.text())
        t.type(line + "\t")
        m = t.read_until(expect, start)
        shown = t.text()[start:m.end()]
        self.sync(t, m.end())
        return shown

    def sync(self, t, after):
        """Empties the command line (Ctrl-E, Ctrl-U), then runs `echo` and waits for what it
        prints: the shell is then back at an empty prompt."""
        self.syncs = getattr(self, "syncs", 0) + 1
        t.type(f"\x05\x15echo SYNC''{self.syncs}\r")
        return t.read_until(rf"(?m)^SYNC{self.syncs}$", after)

    def check_shell(self, shell):
        main, other = self.make_vault()
        with open(os.path.join(self.work, "report-2026.txt"), "w") as f:
            f.write("data\n")
        os.mkdir(os.path.join(self.work, "outdir"))
        count = self.audit_count_of_a_copy()
        before = tree_state(self.kms.vault_dir)
        self.assertTrue(os.path.exists(self.kms.vault + "-wal"), "kmsctl keeps its WAL")
        t = self.start(shell)
        # Commands and verbs.
        self.tab(t, "kmsctl secr", r"kmsctl secret ", shell)
        self.tab(t, "kmsctl key desc", r"kmsctl key describe ", shell)
        # A key's alias and id, and a secret's name, from the vault.
        self.tab(t, "kmsctl key describe alias/ap", r"alias/app-main", shell)
        shown = self.tab(t, "kmsctl key describe al", r"alias/kmsctl/secrets", shell)
        self.assertIn("alias/app-main", shown)
        self.tab(t, f"kmsctl key describe {other[:8]}", re.escape(other), shell)
        self.tab(t, "kmsctl encrypt --key alias/app", r"--key alias/app-main", shell)
        self.tab(t, "kmsctl secret get db", r"db-password", shell)
        self.tab(t, "kmsctl exec --secret app/t", r"app/token", shell)
        # A vault given on the command line is the one read.
        self.tab(t, f"kmsctl --vault {self.kms.vault} secret describe app/", r"app/token", shell)
        # The allowed values of an option.
        shown = self.tab(t, "kmsctl key list --state ", r"pending-deletion", shell)
        for state in ("enabled", "disabled"):
            self.assertIn(state, shown)
        self.tab(t, "kmsctl secret get db-password --stage prev", r"--stage previous", shell)
        self.tab(t, "kmsctl key create --spec EC_P2", r"EC_P256", shell)
        # Files, after a file-taking option and as a FILE argument; a directory after --out-dir.
        self.tab(t, "kmsctl encrypt --key alias/app-main --in rep", r"--in report-2026\.txt", shell)
        self.tab(t, "kmsctl file encrypt rep", r"encrypt report-2026\.txt", shell)
        self.tab(t, "kmsctl file encrypt --out-dir out", r"--out-dir outdir", shell)
        # The global options after the command words.
        self.tab(t, "kmsctl key list --va", r"--vault", shell)
        self.tab(t, "kmsctl secret get db-password --pin-f", r"--pin-file", shell)
        out = t.text()[self.mark:]
        self.assertNotIn("PIN", out, "no PIN was asked")
        self.assertNotIn("error", out)
        t.close()
        self.assertEqual(tree_state(self.kms.vault_dir), before,
                         "nothing was written where the vault is")
        self.assertEqual(self.kms.audit_count(), count, "completing added no audit record")

    def test_bash_completes_names_values_files_and_global_options_in_a_terminal(self):
        self.check_shell("bash")

    def test_zsh_completes_names_values_files_and_global_options_in_a_terminal(self):
        self.check_shell("zsh")

    def test_fish_completes_names_values_files_and_global_options_in_a_terminal(self):
        self.check_shell("fish")

    def bash_complete(self, *words, env=None):
        """COMPREPLY of _kmsctl (bash-completion loaded) for a command line whose last word is
        being completed."""
        # COMP_WORDS as bash makes them: `=` and `:` (in COMP_WORDBREAKS) are words of their own.
        split = []
        for w in words:
            parts = [p for p in re.split(r"([=:])", w) if p]
            split += parts or [""]
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in split)
        line = " ".join(words)
        words = split
        cmd = (f"source {BASH_COMPLETION}; source '{self.scripts}/kmsctl.bash'; "
               f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
               f"COMP_POINT={len(line)}; _kmsctl; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
        e = self.shell_env()
        e.update(env or {})
        p = subprocess.run(["bash", "--norc", "--noprofile", "-c", cmd], capture_output=True,
                           text=True, timeout=WAIT, cwd=self.work, env=e, stdin=subprocess.DEVNULL)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        return p.stdout.split()

    def test_bash_offers_only_what_the_position_takes(self):
        if not os.path.exists(BASH_COMPLETION):
            self.skipTest("bash-completion is not installed (apt-get install bash-completion)")
        main, _ = self.make_vault()
        self.assertEqual(self.bash_complete("kmsctl", "audit", "list", "--outcome", ""),
                         ["ok", "error", "denied", "started"])
        self.assertEqual(self.bash_complete("kmsctl", "secret", "create", "x", "--charset", "al"),
                         ["alnum", "alnum-symbols"])
        self.assertEqual(self.bash_complete("kmsctl", "key", "create", "--usage", "si"),
                         ["sign"])
        # --opt=VALUE, as bash-completion keeps it one word.
        self.assertEqual(self.bash_complete("kmsctl", "key", "list", "--state=dis"), ["disabled"])
        # The second argument of `key alias create` is a key; its first, a new alias, is not.
        self.assertIn(main, self.bash_complete("kmsctl", "key", "alias", "create", "alias/n", ""))
        self.assertEqual(self.bash_complete("kmsctl", "key", "alias", "create", "al"), [])
        self.assertEqual(self.bash_complete("kmsctl", "key", "alias", "delete", "alias/a"),
                         ["alias/app-main"])
        # After an option's value, the arguments are counted again: `key tag KEY K=V...`.
        self.assertEqual(self.bash_complete("kmsctl", "key", "tag", "--vault", self.kms.vault,
                                            "alias/a"), ["alias/app-main"])
        self.assertEqual(self.bash_complete("kmsctl", "key", "tag", "alias/app-main", "al"), [])
        # A new secret's name is not completed; a secret's value option takes a file.
        self.assertEqual(self.bash_complete("kmsctl", "secret", "create", "db"), [])
        # Another vault on the command line, or KMSCTL_VAULT: that one's names.
        other = self.kms.path("other.db")
        self.assertEqual(self.bash_complete("kmsctl", "--vault", other, "secret", "get", ""), [])
        self.assertEqual(self.bash_complete("kmsctl", "secret", "get", "",
                                            env={"KMSCTL_VAULT": other}), [])
        self.assertEqual(self.bash_complete("kmsctl", "secret", "get", ""),
                         ["app/token", "db-password"])
        # A service's vault is not read (that would be an audited request there).
        self.assertEqual(self.bash_complete("kmsctl", "--server", self.kms.path("kms.sock"),
                                            "secret", "get", ""), [])
        # The hidden command is not offered.
        self.assertEqual(self.bash_complete("kmsctl", "__"), [])

    def test_complete_prints_the_names_that_begin_with_the_prefix(self):
        main, other = self.make_vault()
        # Every key's id and alias (secrets are sealed under a key of kmsctl's own).
        keys = self.kms.json("key", "list", "--json")["items"]
        names = [k["key_id"] for k in keys] + [a for k in keys for a in k["aliases"]]
        self.assertIn(main, names)
        self.assertIn(other, names)
        r = self.complete("keys")
        self.assertEqual((r.rc, r.err), (0, ""), r.show())
        self.assertEqual(sorted(r.out.split()), sorted(names))
        self.assertEqual(self.complete("keys", "alias/a").out, "alias/app-main\n")
        self.assertEqual(self.complete("keys", other[:10]).out, other + "\n")
        self.assertEqual(self.complete("aliases").out, "alias/app-main\nalias/kmsctl/secrets\n")
        self.assertEqual(self.complete("secrets").out, "app/token\ndb-password\n")
        self.assertEqual(self.complete("secrets", "--", "db").out, "db-password\n")
        self.assertEqual(self.complete("secrets", "zz").out, "")
        # With or without the WAL kmsctl keeps beside the vault, nothing is written there.
        for wal in (True, False):
            with self.subTest(wal=wal):
                if not wal:
                    self.kms.checkpoint()
                before = tree_state(self.kms.vault_dir)
                self.assertEqual(self.complete("secrets").out, "app/token\ndb-password\n")
                self.assertEqual(tree_state(self.kms.vault_dir), before)
        # The command is not in help or the manual page.
        self.assertNotIn("__complete", self.kms.ok("--help").out)
        self.assertNotIn("__complete", self.kms.ok("--help-all").out)
        self.assertNotIn("__complete", self.kms.ok("manpage").out)

    def test_complete_prints_nothing_on_any_problem_and_asks_no_pin(self):
        self.make_vault()
        not_a_vault = self.kms.path("plain.db")
        con = sqlite3.connect(not_a_vault)
        con.execute("CREATE TABLE secrets (name TEXT)")
        con.execute("INSERT INTO secrets VALUES ('db-password')")
        con.commit()
        con.close()
        garbage = self.kms.path("garbage.db")
        with open(garbage, "wb") as f:
            f.write(os.urandom(8192))
        for env in ({"KMSCTL_VAULT": self.kms.path("missing.db")},
                    {"KMSCTL_VAULT": not_a_vault},
                    {"KMSCTL_VAULT": garbage},
                    {"KMSCTL_VAULT": self.kms.vault_dir},
                    {"KMSCTL_SERVER": self.kms.path("no.sock")}):
            with self.subTest(env=env):
                r = self.complete("secrets", env=env)
                self.assertEqual((r.rc, r.out, r.err), (0, "", ""), r.show())
        r = self.complete("secrets", "--server", self.kms.path("no.sock"))
        self.assertEqual((r.rc, r.out, r.err), (0, "", ""), r.show())
        # No PIN anywhere, and a terminal that would answer a prompt: none is shown.
        t = Terminal([KMSCTL, "__complete", "secrets"], self.shell_env(), self.work)
        self.addCleanup(t.close)
        self.assertEqual(t.proc.wait(timeout=WAIT), 0)
        t.read_until(r"db-password\s+$")
        self.assertNotIn("PIN", t.text())

    def test_a_name_no_kmsctl_would_write_is_not_offered_to_a_shell(self):
        self.make_vault()
        # Rows changed in the file behind kmsctl's back: control characters, a newline, shell
        # syntax. The completion reads plaintext columns: it skips every name kmsctl would refuse.
        self.kms.sql("UPDATE secrets SET name = ? WHERE name = 'app/token'",
                     ("db-$(touch pwned)\n`id`",))
        self.kms.sql("UPDATE key_aliases SET alias = ? WHERE alias = 'alias/app-main'",
                     ("alias/x\x1b]0;title\x07",))
        self.assertEqual(self.complete("secrets").out, "db-password\n")
        self.assertEqual(self.complete("aliases").out, "alias/kmsctl/secrets\n")
        self.assertEqual(self.bash_complete("kmsctl", "secret", "get", "db")
                         if os.path.exists(BASH_COMPLETION) else ["db-password"], ["db-password"])
        self.assertFalse(os.path.exists(os.path.join(self.work, "pwned")))


if __name__ == "__main__":
    kmsenv.main()
