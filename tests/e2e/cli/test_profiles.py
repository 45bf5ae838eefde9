"""Profiles: the config file ($XDG_CONFIG_HOME/kmsctl/config.toml, or KMSCTL_CONFIG), chosen
with --profile, KMSCTL_PROFILE or default_profile; flags over environment variables over the
profile over the defaults; `kmsctl config list|get|set|unset`; and no secrets in the file."""

import json
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import AgentTestCase, KmsTestCase, NOT_FOUND, UNAVAILABLE, USAGE

BARE = ("KMSCTL_VAULT", "KMSCTL_PIN_FILE")  # unset: only the profile names the vault


class Profiles(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.config_dir = os.path.join(self.kms.home, ".config", "kmsctl")
        self.config = os.path.join(self.config_dir, "config.toml")

    def write_config(self, text, mode=0o600):
        os.makedirs(self.config_dir, mode=0o700, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(text)
        os.chmod(self.config, mode)

    def bare(self, *args, **kw):
        return self.kms.run(*args, unset=BARE, **kw)

    def set_work_profile(self):
        """Profile work: this environment's vault and PIN file."""
        self.kms.ok("config", "set", "vault", self.kms.vault, "--profile", "work")
        self.kms.ok("config", "set", "pin_file", self.kms.pin_file, "--profile", "work")

    def test_without_a_config_file_nothing_changes(self):
        self.kms.init()
        r = self.kms.ok("status")
        self.assertIn(self.kms.vault, r.out)
        self.assertFalse(r.out.lstrip().startswith("{"))
        self.assertFalse(os.path.exists(self.config_dir))
        # Without KMSCTL_VAULT the default vault is looked for, as before: there is none.
        self.assertError(self.bare("key", "list"), UNAVAILABLE, "no vault at",
                         os.path.join(self.kms.home, ".local", "share", "kmsctl", "vault.db"))
        r = self.kms.ok("config", "list")
        self.assertIn(self.config, r.out)
        self.assertIn("none yet", r.out)
        self.assertIn("active profile   none", r.out)
        j = self.kms.json("config", "list", "--json")
        self.assertEqual(j, {"file": self.config, "exists": False, "default_profile": None,
                             "active": {"profile": None, "from": None, "exists": False},
                             "profiles": {}})
        # A file with profiles but none asked for and no default_profile changes nothing either.
        self.write_config('[profiles.other]\nvault = "/nonexistent/other.db"\noutput = "json"\n')
        r = self.kms.ok("status")
        self.assertIn(self.kms.vault, r.out)
        self.assertFalse(r.out.lstrip().startswith("{"))
        self.assertFalse(os.path.exists(self.kms.path("config")), "nothing else written")

    def test_set_get_list_unset_round_trip_and_the_file_is_private(self):
        self.set_work_profile()
        self.kms.ok("config", "set", "output", "json", "--profile", "work")
        self.kms.ok("config", "set", "quiet", "true", "--profile", "work")
        r = self.kms.ok("config", "set", "server", "/run/kmsctl/kms.sock", "--profile", "ci")
        self.assertIn("server set in profile ci", r.err)
        self.assertEqual(stat.S_IMODE(os.stat(self.config).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.config_dir).st_mode), 0o700)
        self.assertEqual(os.listdir(self.config_dir), ["config.toml"], "no temporary file left")
        self.kms.ok("config", "set", "default_profile", "work")
        for key, value in (("vault", self.kms.vault), ("pin_file", self.kms.pin_file),
                           ("output", "json"), ("quiet", "true")):
            with self.subTest(key=key):
                self.assertEqual(self.kms.ok("config", "get", key).out, value + "\n")
                self.assertEqual(self.kms.ok("config", "get", key, "--profile", "work").out,
                                 value + "\n")
        self.assertEqual(self.kms.json("config", "get", "quiet", "--json"),
                         {"profile": "work", "key": "quiet", "value": True})
        self.assertEqual(self.kms.ok("config", "get", "server", "--profile", "ci").out,
                         "/run/kmsctl/kms.sock\n")
        self.assertEqual(self.kms.ok("config", "get", "default_profile").out, "work\n")
        self.assertError(self.kms.run("config", "get", "server"), NOT_FOUND, "does not set server")
        j = self.kms.json("config", "list", "--json")
        self.assertEqual(j["file"], self.config)
        self.assertTrue(j["exists"])
        self.assertEqual(j["default_profile"], "work")
        self.assertEqual(j["active"], {"profile": "work", "from": "default", "exists": True})
        self.assertEqual(j["profiles"], {
            "ci": {"server": "/run/kmsctl/kms.sock"},
            "work": {"vault": self.kms.vault, "pin_file": self.kms.pin_file, "output": "json",
                     "quiet": True}})
        r = self.kms.ok("config", "list", "--profile", "ci")
        self.assertIn("active profile   ci (from --profile)", r.out)
        self.assertRegex(r.out, r"(?m)^profile ci \(active\)$")
        self.assertRegex(r.out, r"(?m)^  server +/run/kmsctl/kms.sock$")
        r = self.kms.ok("config", "list", env={"KMSCTL_PROFILE": "ci"})
        self.assertIn("active profile   ci (from KMSCTL_PROFILE)", r.out)
        # unset removes one key and keeps the rest, and the other profiles.
        self.kms.ok("config", "unset", "quiet")
        self.assertError(self.kms.run("config", "get", "quiet"), NOT_FOUND)
        j = self.kms.json("config", "list", "--json")
        self.assertEqual(set(j["profiles"]["work"]), {"vault", "pin_file", "output"})
        self.assertEqual(j["profiles"]["ci"], {"server": "/run/kmsctl/kms.sock"})
        # The file is TOML that a person can read and edit.
        with open(self.config) as f:
            text = f.read()
        self.assertIn('default_profile = "work"', text)
        self.assertIn("[profiles.work]", text)
        self.assertIn(f'vault = "{self.kms.vault}"', text)

    def test_a_relative_path_given_to_set_is_stored_absolute(self):
        os.mkdir(self.kms.path("sub"), 0o700)
        self.kms.ok("config", "set", "vault", "./v.db", "--profile", "p", cwd=self.kms.path("sub"))
        self.assertEqual(self.kms.ok("config", "get", "vault", "--profile", "p").out,
                         self.kms.path("sub", "v.db") + "\n")
        # A bare word is a path when it names a file that exists.
        self.kms.ok("config", "set", "pin_file", "pin", "--profile", "p")
        self.assertEqual(self.kms.ok("config", "get", "pin_file", "--profile", "p").out,
                         self.kms.pin_file + "\n")

    def test_the_first_profile_set_without_a_name_is_default_and_the_default_profile(self):
        r = self.kms.ok("config", "set", "output", "json")
        self.assertIn("profile default", r.err)
        self.assertIn("now the default profile", r.err)
        self.assertEqual(self.kms.ok("config", "get", "default_profile").out, "default\n")

    def test_the_profiles_vault_and_pin_file_are_used(self):
        self.kms.init()
        key_id = self.kms.ok("key", "create", "--alias", "alias/profiled").out.strip()
        self.set_work_profile()
        for args, env in ((("--profile", "work"), None), ((), {"KMSCTL_PROFILE": "work"})):
            with self.subTest(args=args, env=env):
                r = self.bare(*args, "key", "list", env=env)
                self.assertOk(r)
                self.assertIn(key_id, r.out)
                j = json.loads(self.bare(*args, "status", "--json", env=env).out)
                self.assertEqual(j["vault"]["path"], self.kms.vault)
        # --profile after the command, as the other global options.
        r = self.bare("key", "list", "--profile", "work")
        self.assertOk(r)
        self.assertIn(key_id, r.out)
        # Without a profile asked for and no default_profile: no vault.
        self.assertError(self.bare("key", "list"), UNAVAILABLE, "no vault at")
        self.kms.ok("config", "set", "default_profile", "work")
        r = self.bare("key", "list")
        self.assertOk(r)
        self.assertIn(key_id, r.out)

    def test_flags_override_environment_variables_which_override_the_profile(self):
        self.kms.init()
        self.set_work_profile()
        env_vault = self.kms.path("from-env.db")
        flag_vault = self.kms.path("from-flag.db")
        # The profile alone.
        r = self.bare("--profile", "work", "status", "--json")
        self.assertOk(r)
        self.assertEqual(json.loads(r.out)["vault"]["path"], self.kms.vault)
        # The environment variable over the profile.
        r = self.bare("--profile", "work", "status", env={"KMSCTL_VAULT": env_vault})
        self.assertError(r, UNAVAILABLE, "no vault at " + env_vault)
        # The flag over both.
        r = self.bare("--profile", "work", "--vault", flag_vault, "status",
                      env={"KMSCTL_VAULT": env_vault})
        self.assertError(r, UNAVAILABLE, "no vault at " + flag_vault)
        # The same for the PIN file: a wrong one in the profile, the right one in the environment.
        wrong = self.kms.write_secret_file("wrong-pin", "9999")
        self.kms.ok("config", "set", "pin_file", wrong, "--profile", "work")
        r = self.bare("--profile", "work", "key", "list")
        self.assertEqual(r.rc, UNAVAILABLE, r.show())
        r = self.bare("--profile", "work", "key", "list",
                      env={"KMSCTL_PIN_FILE": self.kms.pin_file})
        self.assertOk(r)
        r = self.bare("--profile", "work", "--pin-file", self.kms.pin_file, "key", "list",
                      env={"KMSCTL_PIN_FILE": wrong})
        self.assertOk(r)
        # --profile over KMSCTL_PROFILE, KMSCTL_PROFILE over default_profile.
        self.kms.ok("config", "set", "vault", self.kms.path("other.db"), "--profile", "other")
        self.kms.ok("config", "set", "default_profile", "other")
        r = self.bare("--profile", "work", "status", env={"KMSCTL_PROFILE": "other",
                                                          "KMSCTL_PIN_FILE": self.kms.pin_file})
        self.assertOk(r)
        r = self.bare("status", env={"KMSCTL_PROFILE": "work",
                                     "KMSCTL_PIN_FILE": self.kms.pin_file})
        self.assertOk(r)
        self.assertError(self.bare("status"), UNAVAILABLE, self.kms.path("other.db"))

    def test_an_unknown_profile_is_a_usage_error_naming_the_file_and_its_profiles(self):
        # No config file at all.
        r = self.kms.run("--profile", "prod", "status")
        self.assertError(r, USAGE, "--profile names profile prod", self.config)
        self.kms.ok("config", "set", "output", "json", "--profile", "dev")
        self.kms.ok("config", "set", "quiet", "true", "--profile", "staging")
        for args, env, source in ((("--profile", "prod"), None, "--profile"),
                                  ((), {"KMSCTL_PROFILE": "prod"}, "KMSCTL_PROFILE")):
            with self.subTest(source=source):
                r = self.kms.run(*args, "status", env=env)
                self.assertError(r, USAGE, f"{source} names profile prod", self.config,
                                 hint="its profiles: dev, staging")
        self.write_config('default_profile = "gone"\n[profiles.dev]\noutput = "json"\n')
        self.assertError(self.kms.run("status"), USAGE, "default_profile names profile gone",
                         self.config, hint="its profiles: dev")
        self.assertError(self.kms.run("config", "get", "output", "--profile", "nope"), USAGE,
                         "nope")
        # config set makes a new profile.
        self.kms.ok("config", "set", "output", "text", "--profile", "nope")

    def test_secrets_are_refused_and_never_repeated(self):
        pin = "73914682"
        for args in (("pin", pin), ("so_pin", pin), ("password", pin), ("secret", pin),
                     ("token_pin", pin), ("pin_file", pin), ("vault", pin),
                     ("server", "c2VjcmV0LWtleS1tYXRlcmlhbA=="), ("output", pin),
                     ("quiet", pin), ("default_profile", pin)):
            with self.subTest(args=args):
                r = self.kms.run("config", "set", *args, "--profile", "p")
                self.assertError(r, USAGE)
                self.assertNotIn(args[1], r.err)
                self.assertNotIn(args[1], r.out)
        r = self.kms.run("config", "set", "pin", pin)
        self.assertError(r, USAGE, "holds no secrets", "pin_file", "0600")
        r = self.kms.run("config", "set", "pin_file", pin)
        self.assertError(r, USAGE, "pin_file is not a path", "not shown")
        self.assertFalse(os.path.exists(self.config), "a refused set writes nothing")
        r = self.kms.run("config", "set", "valut", "/x.db")
        self.assertError(r, USAGE, "valut: unknown key", hint="did you mean vault?")

    def test_a_config_file_holding_a_secret_is_refused_without_showing_it(self):
        self.kms.init()
        for text, needles in (
                ('[profiles.work]\nvault = "/v.db"\npin = "73914682"\n',
                 ("profiles.work.pin", "holds no secrets")),
                ('[profiles.work]\npassword = "73914682"\n', ("profiles.work.password",)),
                ('[profiles.work]\npin_file = "73914682"\n', ("profiles.work.pin_file",
                                                              "is not a path")),
                ('[profiles.work]\npin_file = 73914682\n', ("profiles.work.pin_file",
                                                            "must be a string")),
                ('so_pin = "73914682"\n', ("so_pin", "holds no secrets")),
                ('[profiles.work]\nvaultt = "/v.db"\n', ("vaultt: unknown key",)),
                ('[profiles.work\npin = 73914682\n', ("not valid TOML",))):
            with self.subTest(text=text):
                self.write_config(text)
                for args in (("status",), ("--profile", "work", "status"), ("config", "list")):
                    r = self.kms.run(*args)
                    self.assertError(r, USAGE, self.config, *needles)
                    self.assertNotIn("73914682", r.err)

    def test_a_config_file_other_users_can_write_is_refused(self):
        self.kms.init()
        self.write_config('[profiles.work]\noutput = "json"\n', mode=0o620)
        for args in (("status",), ("config", "list")):
            r = self.kms.run(*args)
            self.assertError(r, USAGE, self.config, "writable by other users", "0620",
                             hint="chmod go-w")
        os.chmod(self.config, 0o644)  # readable is fine: it holds no secrets
        self.kms.ok("status")

    def test_output_json_and_quiet_from_the_profile(self):
        self.kms.init()
        self.kms.ok("config", "set", "output", "json", "--profile", "j")
        self.kms.ok("config", "set", "quiet", "true", "--profile", "j")
        # A command with --json prints JSON without it.
        j = json.loads(self.kms.ok("--profile", "j", "status").out)
        self.assertEqual(j["vault"]["path"], self.kms.vault)
        r = self.kms.ok("--profile", "j", "key", "create", "--alias", "alias/j")
        self.assertEqual(json.loads(r.out)["aliases"], ["alias/j"])
        self.assertEqual(r.err, "")
        keys = json.loads(self.kms.ok("key", "list", env={"KMSCTL_PROFILE": "j"}).out)["items"]
        self.assertEqual([k["aliases"] for k in keys], [["alias/j"]])
        # quiet: no confirmation on stderr.
        r = self.kms.ok("--profile", "j", "secret", "create", "app/j", "--value-stdin",
                        input="profiled-value")
        self.assertEqual(r.err, "")
        # secret get prints the value itself, as before: its output is the data.
        r = self.kms.ok("--profile", "j", "secret", "get", "app/j")
        self.assertEqual(r.out, "profiled-value")
        self.assertEqual(json.loads(self.kms.ok("--profile", "j", "secret", "get", "app/j",
                                                "--json").out)["value"], "profiled-value")
        # A command without --json is unchanged.
        r = self.kms.ok("--profile", "j", "random", "--bytes", "8", "--format", "hex")
        self.assertRegex(r.out, r"^[0-9a-f]{16}\n$")
        # A profile with quiet alone; the environment overrides it.
        self.kms.ok("config", "set", "quiet", "true", "--profile", "q")
        r = self.kms.ok("--profile", "q", "secret", "create", "app/hush", "--generate")
        self.assertEqual((r.out, r.err), ("", ""))
        r = self.kms.ok("--profile", "q", "secret", "create", "app/loud", "--generate",
                        env={"KMSCTL_QUIET": "0"})
        self.assertIn("created secret app/loud", r.err)
        # With output = "json" the confirmation is the JSON on stdout.
        r = self.kms.ok("--profile", "j", "secret", "create", "app/json", "--generate")
        self.assertEqual(json.loads(r.out)["name"], "app/json")

    def test_relative_paths_in_the_file_are_relative_to_it_and_tilde_is_home(self):
        self.kms.init()
        # The vault next to the config file, named relatively.
        os.makedirs(self.config_dir, mode=0o700)
        self.write_config('[profiles.rel]\nvault = "./v/vault.db"\n'
                          '[profiles.home]\nvault = "~/vault.db"\n')
        r = self.bare("--profile", "rel", "status")
        self.assertError(r, UNAVAILABLE, os.path.join(self.config_dir, "v", "vault.db"))
        r = self.bare("--profile", "home", "status")
        self.assertError(r, UNAVAILABLE, os.path.join(self.kms.home, "vault.db"))

    def test_config_sets_at_once_all_land(self):
        # Each `config set` rereads and rewrites the whole file: without a lock, two at once
        # would each write back what they read and lose the other's setting.
        procs = [self.kms.popen("config", "set", "output", "json", "--profile", f"p{i}")
                 for i in range(24)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
        j = self.kms.json("config", "list", "--json")
        self.assertEqual(sorted(j["profiles"]), sorted(f"p{i}" for i in range(24)))
        self.assertEqual(os.listdir(self.config_dir), ["config.toml"], "no lock file left")

    def test_kmsctl_config_points_at_another_file(self):
        other = self.kms.path("elsewhere", "kms.toml")
        r = self.kms.ok("config", "set", "output", "json", "--profile", "x",
                        env={"KMSCTL_CONFIG": other})
        self.assertIn(other, r.err)
        self.assertTrue(os.path.exists(other))
        self.assertFalse(os.path.exists(self.config))
        j = self.kms.json("config", "list", "--json", env={"KMSCTL_CONFIG": other})
        self.assertEqual(j["profiles"], {"x": {"output": "json"}})

    def test_config_commands_need_no_vault_and_write_no_audit_record(self):
        self.kms.init()
        before = self.kms.audit_count()
        self.kms.ok("config", "set", "output", "json", "--profile", "a")
        self.kms.ok("config", "get", "output", "--profile", "a")
        self.kms.ok("config", "list")
        self.kms.ok("config", "unset", "output", "--profile", "a")
        self.assertEqual(self.kms.audit_count(), before)
        self.kms.ok("config", "list", env={"KMSCTL_VAULT": self.kms.path("none.db")})


class ProfileAgent(AgentTestCase):
    def test_the_profiles_agent_socket_is_where_the_agent_listens_and_is_found(self):
        self.kms.init()
        key_id = self.kms.ok("key", "create", "--alias", "alias/agent").out.strip()
        sock_dir = self.kms.path("agent-dir")
        os.mkdir(sock_dir, 0o700)
        sock = os.path.join(sock_dir, "agent.sock")
        self.kms.ok("config", "set", "agent_socket", sock, "--profile", "a")
        self.kms.ok("config", "set", "vault", self.kms.vault, "--profile", "a")
        r = self.kms.ok("--profile", "a", "agent", "start", "--json")
        info = json.loads(r.out)
        self.agent_pid = info["pid"]
        self.assertEqual(info["socket"], sock)
        # Status and the commands find it through the profile, without KMSCTL_AGENT_SOCK and
        # without a PIN.
        st = json.loads(self.bare("--profile", "a", "agent", "status", "--json").out)
        self.assertEqual(st["pid"], info["pid"])
        r = self.bare("--profile", "a", "key", "list")
        self.assertOk(r)
        self.assertIn(key_id, r.out)
        # Without the profile, no agent and no PIN: the command cannot run.
        r = self.kms.run("key", "list", unset=("KMSCTL_PIN_FILE",))
        self.assertEqual(r.rc, UNAVAILABLE, r.show())
        self.bare("--profile", "a", "agent", "stop")
        self.assertError(self.bare("--profile", "a", "agent", "status"), UNAVAILABLE)

    def bare(self, *args, **kw):
        return self.kms.run(*args, unset=BARE, **kw)


if __name__ == "__main__":
    kmsenv.main()
