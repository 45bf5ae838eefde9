"""scripts/rotators/postgres.sh against a real, throwaway PostgreSQL: a cluster made by initdb in
a temporary directory, listening only on a private unix socket directory, started and stopped by
this test. Rotating the app role's password: the new password logs in and the old one no longer
does; a failing `test` step sets the old password back, and the retry finishes the rotation.

Skipped (with a message) only when the PostgreSQL server binaries are not installed;
scripts/setup.sh installs them (Debian `postgresql`), so CI runs it."""

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import FAILED, SOURCE_DIR, SecretsTestCase, main

ROTATOR = os.path.join(SOURCE_DIR, "scripts", "rotators", "postgres.sh")
ADMIN_PW = "admin-Pw-for-the-throwaway-cluster-1"
APP_PW = "app-initial-password-2"


def pg_bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


class Postgres(SecretsTestCase):

    @classmethod
    def setUpClass(cls):
        cls.bindir = pg_bindir()
        if cls.bindir is None or shutil.which("psql") is None or shutil.which("jq") is None:
            raise unittest.SkipTest("PostgreSQL server binaries (Debian `postgresql`), psql or jq "
                                    "not installed; scripts/setup.sh installs them")
        super().setUpClass()
        # initdb refuses to run as root: the cluster belongs to the `postgres` user then.
        cls.user = None
        if os.geteuid() == 0:
            cls.user = pwd.getpwnam("postgres")
        cls.pgroot = tempfile.mkdtemp(prefix="kmsctl-pg-e2e-")
        cls.sock = os.path.join(cls.pgroot, "sock")
        cls.data = os.path.join(cls.pgroot, "data")
        os.mkdir(cls.sock, 0o700)
        pwfile = os.path.join(cls.pgroot, "pwfile")
        with open(pwfile, "w") as f:
            f.write(ADMIN_PW + "\n")
        if cls.user:
            for p in (cls.pgroot, cls.sock, pwfile):
                os.chown(p, cls.user.pw_uid, cls.user.pw_gid)
        os.chmod(cls.pgroot, 0o700)
        cls.port = "5433"
        try:
            cls.pg("initdb", "-D", cls.data, "-U", "admin", "--auth=scram-sha-256",
                   f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions")
            cls.pg("pg_ctl", "-D", cls.data, "-w", "-l", os.path.join(cls.pgroot, "log"), "-o",
                   f"-k {cls.sock} -c listen_addresses= -p {cls.port}", "start")
            cls.admin_sql("CREATE ROLE app LOGIN PASSWORD '" + APP_PW + "'")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if os.path.exists(os.path.join(cls.data, "postmaster.pid")):
                cls.pg("pg_ctl", "-D", cls.data, "-w", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(cls.pgroot, ignore_errors=True)
            super().tearDownClass()

    @classmethod
    def pg(cls, tool, *args):
        kw = {}
        if cls.user:
            kw = {"user": cls.user.pw_uid, "group": cls.user.pw_gid, "extra_groups": []}
        p = subprocess.run([os.path.join(cls.bindir, tool), *args], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=120, cwd=cls.pgroot,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"},
                           **kw)
        if p.returncode != 0:
            raise AssertionError(f"{tool} failed: {p.stdout.decode()} {p.stderr.decode()}")

    @classmethod
    def psql(cls, user, password, sql="SELECT 1"):
        return subprocess.run(["psql", "-X", "-q", "-h", cls.sock, "-p", cls.port, "-U", user,
                               "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                   "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"})

    @classmethod
    def admin_sql(cls, sql):
        p = cls.psql("admin", ADMIN_PW, sql)
        if p.returncode != 0:
            raise AssertionError(f"psql as admin failed: {p.stderr.decode()}")

    def logs_in(self, password):
        return self.psql("app", password).returncode == 0

    def creds(self, user, password):
        return json.dumps({"host": self.sock, "port": int(self.port), "user": user,
                           "password": password, "database": "postgres"}).encode()

    def test_rotating_the_app_role_password(self):
        v = self.vault
        self.create("db/admin", self.creds("admin", ADMIN_PW))
        self.create("db/app", self.creds("app", APP_PW), "--rotation-command",
                    f"{ROTATOR} --admin-secret db/admin")
        self.assertTrue(self.logs_in(APP_PW))

        r = v.json("secret", "rotate", "db/app", "--json")
        self.assertEqual(r["steps"], ["create", "set", "test", "finish"])
        new = json.loads(self.get("db/app"))
        self.assertEqual({k: new[k] for k in ("host", "port", "user", "database")},
                         {k: json.loads(self.creds("app", "x"))[k]
                          for k in ("host", "port", "user", "database")})
        self.assertNotEqual(new["password"], APP_PW)
        self.assertTrue(self.logs_in(new["password"]), "the new password logs in")
        self.assertFalse(self.logs_in(APP_PW), "the old one no longer does")
        self.assertEqual(json.loads(self.get("db/app", "--stage", "previous"))["password"], APP_PW)
        self.assertNotStored(new["password"].encode(), APP_PW.encode(), ADMIN_PW.encode())

        # A failing test step: logins are refused while it runs, so the new password cannot be
        # checked; the rotator sets the current password back and the rotation stops.
        working = new["password"]
        self.admin_sql("ALTER ROLE app CONNECTION LIMIT 0")
        r = v.run("secret", "rotate", "db/app")
        self.assertEqual(r.rc, FAILED, r)
        self.assertIn("failed at step test", r.err)
        self.assertIn("setting the current one back", r.err)
        self.admin_sql("ALTER ROLE app CONNECTION LIMIT -1")
        pending = json.loads(self.get("db/app", "--stage", "pending"))["password"]
        self.assertEqual(json.loads(self.get("db/app"))["password"], working, "current unchanged")
        self.assertTrue(self.logs_in(working), "the old password still works")
        self.assertFalse(self.logs_in(pending))

        r = v.json("secret", "rotate", "db/app", "--json")
        self.assertEqual((r["resumed"], r["steps"]), (True, ["set", "test", "finish"]))
        self.assertEqual(json.loads(self.get("db/app"))["password"], pending)
        self.assertTrue(self.logs_in(pending))
        self.assertFalse(self.logs_in(working))


if __name__ == "__main__":
    main()
