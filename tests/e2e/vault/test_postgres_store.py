"""A vault in PostgreSQL: `--vault` (or KMSCTL_VAULT; also --store, KMSCTL_STORE) names a
database by a libpq connection string instead of a file, and the token by its module. A
throwaway cluster (initdb on a private socket) holds one database per test; a SoftHSM2 token of
the test's own is the HSM (behind `p11-kit server` where hosts share it). What holds for a file
holds here: rows edited with psql are refused; a database put back from an older pg_dump is
refused as a rolled-back file is, until `vault restore` accepts it; three hosts writing at once
keep one chain, a write that loses to another is done once, and the server killed under load
splits no request; no secret, password or connection string reaches a table, an output or a
message. (The rest of the end-to-end suite runs on PostgreSQL too: e2e_pg_*.)"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (CLIENT_MODULE, INTEGRITY, REFUSED, UNAVAILABLE, USAGE, KmsTestCase,
                    PostgresCluster, Result, SOFTHSM_MODULE, read, write)

PASSWORD = "db-Pw-never-shown-4e1f"
SO_PIN = "e2e-SO-pin-9d2b"


def stop_process(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class PostgresStore(KmsTestCase):
    cluster = None
    databases = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # scram-sha-256: the password in the connection string is really used, and must not leak.
        cls.cluster = PostgresCluster(auth="scram-sha-256", admin_password=PASSWORD)

    @classmethod
    def tearDownClass(cls):
        if cls.cluster:
            cls.cluster.remove()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        PostgresStore.databases += 1
        self.db = f"vault{PostgresStore.databases}"
        self.cluster.admin_sql(f"CREATE DATABASE {self.db}")
        self.location = self.cluster.conninfo(self.db) + f" password={PASSWORD}"
        # The token: SoftHSM2 with a directory of this test's own, named by its module.
        tokens = self.kms.path("hsm", "tokens")
        os.makedirs(tokens, 0o700)
        conf = self.kms.path("hsm", "softhsm2.conf")
        write(conf, f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n".encode())
        p = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "prod",
                            "--so-pin", SO_PIN, "--pin", self.kms.pin],
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                "SOFTHSM2_CONF": conf},
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.kms.env_overrides.update({"KMSCTL_VAULT": self.location, "SOFTHSM2_CONF": conf})

    def init(self):
        return self.kms.init("--pkcs11-module", SOFTHSM_MODULE, "--token-label", "prod")

    def sql(self, statement):
        return self.cluster.admin_sql(statement, self.db)

    def assertNoPassword(self):
        for argv, r in self.kms.transcript:
            self.assertNotIn(PASSWORD, r.out + r.err, argv)

    def test_every_command_works_on_a_vault_in_postgresql(self):
        r = self.init()
        shown = f"postgresql://admin@/{self.db}?host={self.cluster.sock}&port={self.cluster.port}"
        self.assertIn(shown, r.out + r.err)
        st = self.kms.status()
        self.assertEqual(st["vault"]["path"], shown)
        self.assertEqual(st["token"]["label"], "prod")
        self.assertFalse(st["token"]["private"])
        self.assertEqual(st["root_key_seal"], "aes-gcm")

        key = self.kms.create_key("--alias", "alias/app")
        blob = self.kms.encrypt(key, b"in the database", "--context", "app=x")
        self.assertEqual(self.kms.decrypt(blob, "--context", "app=x"), b"in the database")
        self.kms.ok("secret", "create", "app/db", "--value-stdin", input="s3cr3t-in-pg-7a")
        self.kms.ok("secret", "put", "app/db", "--value-stdin", input="s3cr3t-in-pg-8b")
        self.assertEqual(self.kms.ok("secret", "get", "app/db").out, "s3cr3t-in-pg-8b")
        plain, enc, out = (self.kms.path(n) for n in ("plain", "plain.kms", "plain.out"))
        write(plain, os.urandom(1 << 20))
        self.kms.ok("file", "encrypt", "--key", key, plain, "-o", enc)
        self.kms.ok("file", "decrypt", enc, "-o", out)
        self.assertEqual(read(out), read(plain))
        self.kms.ok("key", "rotate", key)
        self.kms.ok("audit", "verify")

        # The rows are the database's: one record per command, the chain in seq order.
        actions = self.sql("SELECT action FROM audit_log ORDER BY seq").split()
        self.assertEqual(actions[0], "vault.init")
        self.assertIn("secret.get", actions)
        self.assertEqual(self.sql("SELECT count(*) FROM secret_versions").strip(), "2")
        # Nothing secret in any table: a dump of the whole database holds neither value.
        dump = self.kms.path("all.sql")
        self.cluster.dump(self.db, dump, fmt="p")  # plain SQL: -Fc would compress the values
        data = read(dump)
        for needle in (b"s3cr3t-in-pg-7a", b"s3cr3t-in-pg-8b", b"in the database", PASSWORD.encode()):
            self.assertNotIn(needle, data)
        self.assertNoPassword()

    def test_a_row_edited_with_psql_is_refused(self):
        self.init()
        key = self.kms.create_key()
        self.sql(f"UPDATE keys SET state = 'Disabled' WHERE id = '{key}'")
        r = self.kms.run("encrypt", "--key", key, input=b"x")
        self.assertError(r, INTEGRITY, "altered outside kmsctl")
        self.assertNotEqual(self.kms.run("audit", "verify").rc, 0)
        self.assertNoPassword()

    def test_a_database_put_back_from_an_older_dump_is_refused_until_vault_restore(self):
        self.init()
        key = self.kms.create_key()
        older = self.kms.path("older.dump")
        self.cluster.dump(self.db, older)
        self.kms.encrypt(key, b"after the dump")
        head = int(self.sql("SELECT max(seq) FROM audit_log").strip())
        self.cluster.restore(self.db, older)
        for argv in (("status",), ("encrypt", "--key", key)):
            r = self.kms.run(*argv, input=b"x")
            self.assertError(r, INTEGRITY, "token anchor", "put back from an older copy",
                             hint="kmsctl vault restore --force")
        kept = int(self.sql("SELECT max(seq) FROM audit_log").strip())
        self.assertLess(kept, head)

        # `vault restore` accepts the database as it is, on purpose only; a file is not for it.
        self.assertError(self.kms.run("vault", "restore", self.kms.path("b.db")), USAGE,
                         "the vault is in PostgreSQL", hint="without a file")
        r = self.kms.run("vault", "restore")
        self.assertError(r, REFUSED, f"ends at seq {kept}, before its token anchor (seq {head})",
                         hint="--force")
        self.assertEqual(int(self.sql("SELECT max(seq) FROM audit_log").strip()), kept)
        r = self.kms.json("vault", "restore", "--force", "--json")
        self.assertEqual((r["audit_records"], r["replaced_anchor_seq"]), (kept, head))
        self.assertEqual(r["dropped"]["records"],
                         {"count": head - kept, "first_seq": kept + 1, "last_seq": head})
        rec = self.kms.records()[-1]
        self.assertEqual((rec["action"], rec["seq"]), ("vault.restore", kept + 1))
        self.assertEqual(rec["params"]["replaced_anchor_seq"], head)
        self.assertEqual(rec["params"]["dropped_records"], head - kept)
        self.kms.encrypt(key, b"after the restore")
        self.assertIn("rows match the state", self.kms.ok("audit", "verify").out)
        self.assertError(self.kms.run("vault", "restore", "--force"), USAGE,
                         "agrees with its token anchor", "nothing to restore")
        self.assertNoPassword()

    def test_three_hosts_with_their_own_token_clients_make_200_writes_each_at_once(self):
        # The token on an HSM host of its own, exported by `p11-kit server`; three client
        # "hosts", each with its own environment (home, PIN file, p11-kit client) and the
        # database's connection string, write at once: secrets made, versions put, one key
        # rotated by all, encryptions recorded.
        hsm = kmsenv.HsmHost(self.kms.root, self.kms.pin, label="shared")
        self.addCleanup(hsm.stop)
        hsm.start()
        hosts = []
        for n in range(3):
            h = kmsenv.KmsEnv(pin=self.kms.pin)
            self.addCleanup(h.cleanup)
            h.env_overrides.update({"KMSCTL_VAULT": self.location,
                                    "P11_KIT_SERVER_ADDRESS": hsm.address})
            hosts.append(h)
        hosts[0].init("--pkcs11-module", CLIENT_MODULE, "--token-label", "shared")
        key = hosts[0].create_key("--alias", "alias/shared")
        for n in range(3):
            hosts[n].ok("secret", "create", f"h{n}/p", "--value-stdin", input="v0")
        writes = 40 if kmsenv.SANITIZED else 200
        failures = []

        def work(n, h):
            for i in range(writes):
                argv, data = ((("secret", "create", f"h{n}/s{i}", "--value-stdin"), f"s{i}"),
                              (("secret", "put", f"h{n}/p", "--value-stdin"), f"v{i}"),
                              (("key", "rotate", key), None),
                              (("encrypt", "--key", "alias/shared"), b"x"))[i % 4]
                r = h.run(*argv, input=data)
                if r.rc != 0:
                    failures.append(r.show(argv))

        threads = [threading.Thread(target=work, args=(n, h)) for n, h in enumerate(hosts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        self.assertIn("rows match the state", hosts[1].ok("audit", "verify").out)
        quarter = writes // 4
        count = lambda q: int(self.sql(q).strip())
        # Every write once: a record each, in one gapless chain, and each change it names.
        seqs = [int(x) for x in self.sql("SELECT seq FROM audit_log ORDER BY seq").split()]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        for action, n in (("secret.create", 3 * quarter + 3), ("secret.put", 3 * quarter),
                          ("key.rotate", 3 * quarter), ("key.encrypt", 3 * quarter)):
            self.assertEqual(count(f"SELECT count(*) FROM audit_log WHERE action = '{action}' "
                                   "AND outcome = 'ok'"), n, action)
        self.assertEqual(count(f"SELECT count(*) FROM key_versions WHERE key_id = '{key}'"),
                         3 * quarter + 1)
        self.assertEqual(count(f"SELECT count(DISTINCT version) FROM key_versions "
                               f"WHERE key_id = '{key}'"), 3 * quarter + 1)
        for n in range(3):
            self.assertEqual(self.secret_versions(f"h{n}/p"), quarter + 1)
            self.assertEqual(count(f"SELECT count(*) FROM secrets WHERE name LIKE 'h{n}/s%'"),
                             quarter)
            self.assertEqual(hosts[n].ok("secret", "get", f"h{n}/p").out, f"v{writes - 3}")

    def test_the_server_down_is_exit_6_naming_the_database_and_nothing_is_lost(self):
        self.init()
        key = self.kms.create_key()
        before = self.sql("SELECT count(*) FROM audit_log").strip()
        self.cluster.stop()
        try:
            r = self.kms.run("encrypt", "--key", key, input=b"x")
            self.assertError(r, UNAVAILABLE, "cannot connect to the vault's database",
                             f"postgresql://admin@/{self.db}")
        finally:
            self.cluster.start()
        self.assertEqual(self.sql("SELECT count(*) FROM audit_log").strip(), before)
        self.kms.encrypt(key, b"back")
        self.kms.ok("audit", "verify")
        self.assertNoPassword()

    def test_the_server_killed_under_load_loses_no_record_and_splits_no_request(self):
        self.init()
        key = self.kms.create_key("--alias", "alias/load")
        stop = threading.Event()
        done = {"ok": 0, "failed": 0}
        wrong = []
        lock = threading.Lock()

        def writer(n):
            i = 0
            while not stop.is_set():
                i += 1
                for argv, data in ((("secret", "create", f"k{n}/s{i}", "--value-stdin"), b"v"),
                                   (("key", "rotate", key), None)):
                    r = self.kms.run(*argv, input=data)
                    with lock:
                        done["ok" if r.rc == 0 else "failed"] += 1
                        # While the server is down: exit 6, naming the database.
                        if r.rc not in (0, UNAVAILABLE) or (r.rc and "database" not in r.err):
                            wrong.append(r.show(argv))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            self.cluster.stop("immediate")  # a crash: no checkpoint, connections cut
            time.sleep(1.0)
        finally:
            self.cluster.start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(wrong, [])
        self.assertGreater(done["failed"], 0, "some requests met the server down")
        self.assertGreater(done["ok"], 0)
        # Every request happened with its record or not at all: the chain verifies and the rows
        # are the state its newest record holds.
        self.assertIn("rows match the state", self.kms.ok("audit", "verify").out)
        created = int(self.sql("SELECT count(*) FROM secrets").strip())
        recorded = int(self.sql("SELECT count(*) FROM audit_log WHERE action = 'secret.create' "
                                "AND outcome = 'ok'").strip())
        self.assertEqual(created, recorded)
        self.kms.encrypt(key, b"after the crash")
        self.assertNoPassword()

    def test_vault_migrate_moves_a_file_into_the_database_verified(self):
        # A vault file on its private token, with keys, versions, aliases, secrets, a grant.
        file_env = {"KMSCTL_VAULT": self.kms.vault}
        self.kms.env_overrides.pop("KMSCTL_VAULT")
        self.kms.init()
        key = self.kms.create_key("--alias", "alias/moved")
        self.kms.ok("key", "rotate", key)
        blob = self.kms.encrypt(key, b"sealed before the move")
        self.kms.ok("secret", "create", "app/db", "--value-stdin", input="moved-s3cret-1")
        self.kms.ok("secret", "put", "app/db", "--value-stdin", input="moved-s3cret-2")
        self.kms.ok("key", "tag", key, "team=core")
        before = self.kms.status()
        records = before["counts"]["audit_records"]

        # A database that is not PostgreSQL's, or that holds a vault, is refused before anything
        # is recorded in the file.
        self.assertError(self.kms.run("vault", "migrate", "--to", self.kms.path("x.db")), USAGE,
                         "no PostgreSQL connection string")
        r = self.kms.json("vault", "migrate", "--to", self.location, "--json")
        self.assertEqual(r["to"], f"postgresql://admin@/{self.db}?host={self.cluster.sock}"
                                  f"&port={self.cluster.port}")
        self.assertEqual(r["audit_records"], records + 1)  # the file's, then vault.migrate
        self.assertGreater(r["rows_checked"], 0)
        self.assertError(self.kms.run("vault", "migrate", "--to", self.location), REFUSED,
                         "already holds a kmsctl vault")

        # The database is the same vault: its id, keys, secrets, versions and whole log.
        self.kms.env_overrides["KMSCTL_VAULT"] = self.location
        after = self.kms.status()
        self.assertEqual(after["vault"]["id"], before["vault"]["id"])
        self.assertEqual(after["counts"]["keys"], before["counts"]["keys"])
        self.assertEqual(after["counts"]["secrets"], before["counts"]["secrets"])
        self.assertEqual(self.kms.decrypt(blob), b"sealed before the move")
        self.assertEqual(self.kms.ok("secret", "get", "app/db").out, "moved-s3cret-2")
        self.assertEqual(self.kms.ok("secret", "get", "app/db", "--stage", "previous").out,
                         "moved-s3cret-1")
        self.assertEqual(len(self.kms.json("key", "describe", key, "--json")["versions"]), 2)
        self.assertIn("rows match the state", self.kms.ok("audit", "verify").out)
        actions = self.sql("SELECT action FROM audit_log ORDER BY seq").split()
        self.assertEqual(actions[records], "vault.migrate")
        self.assertEqual(actions[0], "vault.init")

        # The file is behind the anchor now that the database recorded more: refused.
        self.assertError(self.kms.run("status", env=file_env), INTEGRITY, "token anchor")
        self.assertNoPassword()

    def secret_versions(self, name):
        return int(self.sql("SELECT count(*) FROM secret_versions v JOIN secrets s ON "
                            f"s.id = v.secret_id WHERE s.name = '{name}'").strip())

    def records(self, action):
        return self.sql(f"SELECT outcome FROM audit_log WHERE action = '{action}' "
                        "ORDER BY seq").split()

    def test_a_write_that_lost_to_another_writer_runs_again_and_is_done_once(self):
        self.init()
        self.kms.ok("secret", "create", "app/db", "--value-stdin", input="first-value-1")
        # The server rolls the first two commits back as serialization failures (40001).
        r = self.kms.run("secret", "put", "app/db", "--value-stdin", input="second-value-2",
                         env={"KMSCTL_TEST_FAULT": "conflict:2"})
        self.assertOk(r)
        self.assertIn("test fault: conflict 2 failed", r.err)
        self.assertNotIn("conflict 3", r.err)
        self.assertEqual(self.secret_versions("app/db"), 2)
        self.assertEqual(self.records("secret.put"), ["ok"])
        self.assertEqual(self.kms.ok("secret", "get", "app/db").out, "second-value-2")
        self.kms.ok("audit", "verify")

        # A key made in the token by a try that lost is destroyed with it: one token key.
        r = self.kms.run("key", "create", "--protection", "hsm",
                         env={"KMSCTL_TEST_FAULT": "conflict:1"})
        self.assertOk(r)
        self.assertIn("test fault: conflict 1 failed", r.err)
        listing = self.kms.secret_keys(conf=self.kms.path("hsm", "softhsm2.conf"))
        self.assertEqual(listing.count("kmsctl-key:"), 1, listing)
        self.assertEqual(self.records("key.create"), ["ok"])
        self.kms.ok("audit", "verify")

    def test_a_write_that_keeps_losing_gives_up_with_exit_6_and_changes_nothing(self):
        self.init()
        self.kms.ok("secret", "create", "app/db", "--value-stdin", input="first-value-1")
        before = self.sql("SELECT count(*) FROM audit_log").strip()
        r = self.kms.run("secret", "put", "app/db", "--value-stdin", input="lost-value-3",
                         env={"KMSCTL_TEST_FAULT": "conflict:99"})
        # Five tries, then its failure record (a sixth commit, lost too); the error comes last.
        faults, error = r.err.split("kmsctl: error: ", 1)
        self.assertEqual(faults.splitlines(),
                         [f"kmsctl: test fault: conflict {n} failed" for n in range(1, 7)])
        self.assertError(Result(r.rc, r.out, "kmsctl: error: " + error), UNAVAILABLE, "is busy",
                         "gave up after 5 tries", hint="try again")
        self.assertNotIn("lost-value-3", r.err)
        self.assertEqual(self.secret_versions("app/db"), 1)
        # Its failure record lost too (the same writer won): no record, and nothing done.
        self.assertEqual(self.sql("SELECT count(*) FROM audit_log").strip(), before)
        self.assertEqual(self.kms.ok("secret", "get", "app/db").out, "first-value-1")
        self.kms.ok("audit", "verify")

    def test_store_and_kmsctl_store_name_the_database_as_vault_does(self):
        self.kms.env_overrides.pop("KMSCTL_VAULT")
        r = self.kms.run("--store", self.location, "init", "--pkcs11-module", SOFTHSM_MODULE,
                         "--token-label", "prod")
        self.assertOk(r)
        shown = f"postgresql://admin@/{self.db}?host={self.cluster.sock}&port={self.cluster.port}"
        self.assertEqual(self.kms.json("--store", self.location, "status", "--json")["vault"]
                         ["path"], shown)
        self.assertEqual(self.kms.json("status", "--json", unset=("KMSCTL_VAULT",),
                                       env={"KMSCTL_STORE": self.location})["vault"]["path"], shown)
        # The two variables naming different vaults: a usage error that shows neither value.
        r = self.kms.run("status", env={"KMSCTL_STORE": self.location,
                                        "KMSCTL_VAULT": self.kms.path("other.db")})
        self.assertError(r, USAGE, "KMSCTL_VAULT and KMSCTL_STORE name different vaults")
        self.assertNotIn(self.kms.path("other.db"), r.err)
        self.assertNoPassword()

    def test_a_profile_names_the_database_with_its_password_in_pgpass(self):
        self.init()
        key = self.kms.create_key("--alias", "alias/profiled")
        # A profile's value holds no secret: a connection string with a password is refused.
        r = self.kms.run("config", "set", "vault", self.location)
        self.assertError(r, USAGE, "connection string with a password", hint="pgpass")
        self.assertNotIn(PASSWORD, r.out + r.err)
        # The password in ~/.pgpass, the connection string without it in the profile.
        pgpass = os.path.join(self.kms.home, ".pgpass")
        fd = os.open(pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:admin:{PASSWORD}\n")
        self.kms.ok("config", "set", "vault", self.cluster.conninfo(self.db))
        self.kms.env_overrides.pop("KMSCTL_VAULT")
        bare = ("KMSCTL_VAULT",)  # the profile, not the environment, names the vault
        self.assertIn(key, self.kms.ok("key", "list", unset=bare).out)
        st = self.kms.json("status", "--json", unset=bare)
        self.assertEqual(st["vault"]["path"], f"postgresql://admin@/{self.db}?host="
                                              f"{self.cluster.sock}&port={self.cluster.port}")
        self.assertNotIn(PASSWORD, read(os.path.join(self.kms.home, ".config", "kmsctl",
                                                      "config.toml")).decode())

    def test_an_agent_serves_the_database_and_connects_again_after_the_server_restarts(self):
        self.init()
        self.kms.ok("secret", "create", "app/db", "--value-stdin", input="agent-served-v1")
        r = self.kms.ok("agent", "start", "--json", "--socket", self.kms.path("a.sock"))
        info = json.loads(r.out)
        self.addCleanup(stop_process, info["pid"])
        shown = f"postgresql://admin@/{self.db}?host={self.cluster.sock}&port={self.cluster.port}"
        self.assertEqual(info["vault"], shown)  # without the password, which stays in the agent
        served = {"KMSCTL_AGENT_SOCK": info["socket"]}
        no_pin = ("KMSCTL_PIN_FILE",)

        def get():
            return self.kms.run("secret", "get", "app/db", env=served, unset=no_pin)

        self.assertEqual((get().rc, get().out), (0, "agent-served-v1"))
        # The served client neither loads libpq nor connects: the dynamic loader's own account
        # (LD_DEBUG=files) names every library a process loads.
        r = self.kms.run("secret", "get", "app/db", env=dict(served, LD_DEBUG="files"),
                         unset=no_pin)
        self.assertEqual(r.out, "agent-served-v1")
        loaded = re.findall(r"file=(\S+) \[0\];\s+(?:needed|dynamically loaded)", r.err)
        self.assertTrue(loaded, "LD_DEBUG=files printed nothing:\n" + r.err)
        self.assertFalse([f for f in loaded if "softhsm" in f], loaded)
        # Nor libpq, unless kmsctl links it at start (a sanitized build does).
        if not re.search(r"file=libpq\.so\S* \[0\];\s+needed by ", r.err):
            self.assertFalse([f for f in loaded if "libpq" in f], loaded)
        # Another host writes in the database directly; the agent reads what it wrote.
        self.kms.ok("secret", "put", "app/db", "--value-stdin", input="agent-served-v2")
        self.assertEqual(get().out, "agent-served-v2")
        # The server restarts: while it is down a served command fails with exit 6, naming the
        # database; once it is back the agent connects again and serves.
        self.cluster.stop()
        try:
            self.assertError(get(), UNAVAILABLE, "cannot connect to the vault's database", shown)
        finally:
            self.cluster.start()
        self.assertEqual((get().rc, get().out), (0, "agent-served-v2"))
        status = self.kms.json("agent", "status", "--json", env=served)
        self.assertEqual((status["vault"], status["pid"]), (shown, info["pid"]))

        gets = [x for x in self.kms.records() if x["action"] == "secret.get"]
        self.assertEqual([(x["outcome"], x["params"].get("channel")) for x in gets],
                         [("ok", "agent")] * 6, "one record per served get; none while down")
        self.assertEqual({x["params"]["agent"]["pid"] for x in gets}, {info["pid"]})
        self.kms.ok("agent", "stop", env=served)
        self.kms.ok("audit", "verify")
        self.assertNoPassword()

    def test_what_only_a_vault_file_has_is_refused_with_the_way_out(self):
        r = self.kms.run("init")
        self.assertError(r, USAGE, "a vault in PostgreSQL is made on a token named by its module",
                         hint="--pkcs11-module")
        self.init()
        self.assertError(self.kms.run("init", "--pkcs11-module", SOFTHSM_MODULE, "--token-label",
                                      "prod"), REFUSED, "already holds a kmsctl vault")
        self.assertError(self.kms.run("vault", "backup", self.kms.path("b.db")), USAGE,
                         "is in PostgreSQL", hint="pg_dump")
        self.assertFalse(os.path.exists(self.kms.path("b.db")))
        self.assertError(self.kms.run("serve", "--socket", self.kms.path("s.sock"), "--policy",
                                      self.kms.path("p.toml")), USAGE, "a kmsctl service serves "
                                      "a vault file", hint="kmsctl agent start")
        self.assertFalse(os.path.exists(self.kms.path("s.sock")))
        self.kms.ok("audit", "verify")
        self.assertNoPassword()


if __name__ == "__main__":
    kmsenv.main()
