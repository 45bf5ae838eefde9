"""The service mode: `kmsctl serve` opens the vault once, as its own Unix user, and answers the
requests of other users over its sockets, deciding each by the policy file (docs/SERVICE.md,
docs/POLICY.md). The users here are real: the test creates them (the service's user, two members
of an application group, an administrator, an auditor and an outsider) and removes them. Every
client is an ordinary `kmsctl` pointed at the service with KMSCTL_SERVER; it has no PIN and
cannot read the vault. Callers are who the kernel says they are (SO_PEERCRED, SO_PEERGROUPS)."""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsCase, KmsEnv, UnixUsers

POLICY = """\
[[statements]]
sid = "apps-use-app-key"
effect = "allow"
principals = ["group:{apps}"]
actions = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey",
           "secrets:GetSecretValue"]
resources = ["alias/app", "secret/app/+"]

[[statements]]
sid = "app-uses-every-key"
effect = "allow"
principals = ["user:{app}"]
actions = ["kms:Encrypt", "kms:Decrypt"]
resources = ["key/*"]

[[statements]]
sid = "no-prod-decrypt"
effect = "deny"
principals = ["*"]
actions = ["kms:Decrypt"]
resources = ["key/*"]
[statements.conditions]
resource_tags = {{ env = "prod" }}

[[statements]]
sid = "admins"
effect = "allow"
principals = ["user:{admin}"]
roles = ["crypto-admin"]
resources = ["*"]

[[statements]]
sid = "app-creates-secrets"
effect = "allow"
principals = ["user:{app}"]
actions = ["secrets:CreateSecret"]
resources = ["secret/app/*"]

[[statements]]
sid = "auditors"
effect = "allow"
principals = ["user:{auditor}"]
roles = ["auditor"]
resources = ["*"]
"""

STATEMENTS = POLICY.count("[[statements]]")
SECRET_VALUE = "svc-s3cret-4f1e9a"


# A forwarder (as `ssh -R` or socat would be): accepts on argv[1], forwards each connection to
# the socket argv[2]. Runs in a child process as some user.
RELAY = """
import os, socket, sys, threading
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
srv.listen(8)
def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    t = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t.connect(sys.argv[2])
    threading.Thread(target=pump, args=(c, t), daemon=True).start()
    threading.Thread(target=pump, args=(t, c), daemon=True).start()
"""


@unittest.skipUnless(UnixUsers.available(), "needs root to create Unix users")
class Service(KmsCase):
    @classmethod
    def setUpClass(cls):
        cls.users = UnixUsers()
        cls.kms = KmsEnv()
        cls.shared = tempfile.mkdtemp(prefix="kmsctl-svc-")
        try:
            cls.setup_users_and_vault()
            cls.start_service()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def setup_users_and_vault(cls):
        u = cls.users
        cls.apps = u.group("apps")
        cls.svc = u.user("svc")
        cls.app = u.user("app", [cls.apps])
        cls.ci = u.user("ci", [cls.apps])
        cls.admin = u.user("admin")
        cls.auditor = u.user("auditor")
        cls.outsider = u.user("outsider")
        cls.isv = u.user("isv")
        os.chmod(cls.shared, 0o755)
        # Every kmsctl here runs as one of the users: a copy they can reach.
        bin_dir = os.path.join(cls.shared, "bin")
        os.mkdir(bin_dir, 0o755)
        cls.kms.binary, cls.kms.env_overrides = UnixUsers.share_kmsctl(bin_dir)
        # The service's user owns the vault, its token and its socket directory.
        svc_uid, svc_gid, _ = UnixUsers.ids(cls.svc)
        for dirpath, dirnames, filenames in os.walk(cls.kms.root):
            for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                os.chown(name, svc_uid, svc_gid)
        cls.run_dir = os.path.join(cls.shared, "run")
        os.mkdir(cls.run_dir, 0o755)
        os.chown(cls.run_dir, svc_uid, svc_gid)
        cls.sock = os.path.join(cls.run_dir, "kmsctl.sock")
        cls.use_only = os.path.join(cls.run_dir, "use-only.sock")
        cls.home = {}
        for name in (cls.app, cls.ci, cls.admin, cls.auditor, cls.outsider, cls.isv, cls.svc):
            d = os.path.join(cls.shared, name)
            os.mkdir(d, 0o700)
            uid, gid, _ = UnixUsers.ids(name)
            os.chown(d, uid, gid)
            cls.home[name] = d
        as_svc = UnixUsers.as_user(cls.svc)
        cls.kms.init(preexec_fn=as_svc)
        cls.app_key = cls.kms.ok("key", "create", "--alias", "alias/app",
                                 preexec_fn=as_svc).out.strip()
        cls.prod_key = cls.kms.ok("key", "create", "--alias", "alias/prod", "--tag", "env=prod",
                                  preexec_fn=as_svc).out.strip()
        cls.acme_key = cls.kms.ok("key", "create", "--alias", "alias/customer",
                                  preexec_fn=as_svc).out.strip()
        value = cls.kms.write_secret_file("value", SECRET_VALUE)
        os.chown(value, svc_uid, svc_gid)
        cls.kms.ok("secret", "create", "app/db", "--value-file", value, preexec_fn=as_svc)
        os.unlink(value)
        cls.policy = cls.kms.path("policy.toml")
        cls.write_policy(POLICY)

    @classmethod
    def write_policy(cls, text):
        with open(cls.policy, "w") as f:
            f.write(text.format(apps=cls.apps, app=cls.app, admin=cls.admin,
                                auditor=cls.auditor, outsider=cls.outsider))
        os.chmod(cls.policy, 0o644)

    @classmethod
    def start_service(cls):
        env = cls.kms.base_env()
        cls.service_log = open(os.path.join(cls.shared, "serve.log"), "w+")
        cls.service = subprocess.Popen(
            [cls.kms.binary, "serve", "--socket", cls.sock, "--use-only-socket", cls.use_only,
             "--policy", cls.policy, "--json"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=cls.service_log, env=env,
            cwd=cls.kms.root, preexec_fn=UnixUsers.as_user(cls.svc), start_new_session=True)
        ready, _, _ = select.select([cls.service.stdout], [], [], 60)
        line = cls.service.stdout.readline() if ready else b""
        if not line:
            cls.service_log.seek(0)
            raise AssertionError("kmsctl serve did not start: " + cls.service_log.read())
        cls.started = json.loads(line)

    @classmethod
    def tearDownClass(cls):
        service = getattr(cls, "service", None)
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
        cls.users.remove()
        cls.kms.cleanup()
        shutil.rmtree(cls.shared, ignore_errors=True)

    def policy_text(self):
        with open(self.policy) as f:
            return f.read()

    # ---- running kmsctl as one of the users ----
    def as_(self, user, *args, server=None, input=None):
        d = self.home[user]
        env = {"HOME": d, "TMPDIR": d, "KMSCTL_SERVER": server or self.sock}
        return self.kms.run(*args, env=env, unset=("KMSCTL_VAULT", "KMSCTL_PIN_FILE"),
                            preexec_fn=UnixUsers.as_user(user), cwd=d, input=input)

    def mark(self):
        return self.kms.sql("SELECT max(seq) FROM audit_log")[0][0]

    def records_since(self, seq):
        rows = self.kms.sql("SELECT principal, uid, action, resource, params, outcome "
                            "FROM audit_log WHERE seq > ? ORDER BY seq", (seq,))
        return [{"principal": p, "uid": u, "action": a, "resource": r,
                 "params": json.loads(j), "outcome": o} for p, u, a, r, j, o in rows]

    def assertRefused(self, r, action, resource):
        self.assertError(r, kmsenv.REFUSED, "may not " + action, resource)
        self.assertNotIn(SECRET_VALUE, r.out + r.err)

    # ---- tests ----
    def test_the_service_names_its_sockets_and_policy_and_records_its_start(self):
        self.assertEqual([(s["path"], s["reach"]) for s in self.started["sockets"]],
                         [(self.sock, "full"), (self.use_only, "use-only")])
        self.assertEqual(self.started["policy"]["statements"], STATEMENTS)
        starts = [r for r in self.records_since(0) if r["action"] == "service.start"]
        self.assertEqual(len(starts), 1)
        self.assertEqual(starts[0]["principal"], self.svc)
        self.assertEqual(starts[0]["params"]["policy"]["sha256"],
                         kmsenv.sha256_file(self.policy))
        for path in (self.sock, self.use_only):
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o666, "anyone may connect")

    def test_a_group_member_encrypts_and_decrypts_and_the_record_names_user_and_rule(self):
        seq = self.mark()
        for user in (self.app, self.ci):
            blob = self.as_(user, "encrypt", "--key", "alias/app", "--context", "app=billing",
                            input=b"hello")
            self.assertOk(blob)
            out = self.as_(user, "decrypt", "--context", "app=billing", input=blob.raw)
            self.assertOk(out)
            self.assertEqual(out.raw, b"hello")
        rows = self.records_since(seq)
        self.assertEqual([(r["principal"], r["action"], r["outcome"]) for r in rows],
                         [(self.app, "key.encrypt", "ok"), (self.app, "key.decrypt", "ok"),
                          (self.ci, "key.encrypt", "ok"), (self.ci, "key.decrypt", "ok")])
        for r in rows:
            self.assertEqual(r["resource"], "key/" + self.app_key)
            self.assertEqual(r["params"]["channel"], "service")
            self.assertNotEqual(r["params"]["service"]["client_pid"], 0)
        # ci is allowed by its group only; app's own statement comes later in the file.
        self.assertEqual({r["params"]["rule"] for r in rows}, {"policy:apps-use-app-key"})

    def test_an_outsider_is_refused_by_default_naming_action_and_resource_and_audited(self):
        seq = self.mark()
        r = self.as_(self.outsider, "encrypt", "--key", "alias/app", input=b"x")
        self.assertRefused(r, "key.encrypt", "alias/app")
        self.assertIn("ask the service's administrator", r.err)
        r = self.as_(self.outsider, "secret", "get", "app/db")
        self.assertRefused(r, "secret.get", "secret/app/db")
        r = self.as_(self.outsider, "key", "create")
        self.assertRefused(r, "key.create", "key/")
        rows = self.records_since(seq)
        self.assertEqual([(r["principal"], r["action"], r["outcome"], r["params"]["rule"])
                          for r in rows],
                         [(self.outsider, "key.encrypt", "denied", "default-deny"),
                          (self.outsider, "secret.get", "denied", "default-deny"),
                          (self.outsider, "key.create", "denied", "default-deny")])

    def test_an_explicit_deny_wins_over_an_allow(self):
        # app may encrypt and decrypt under every key, but no one may decrypt under a prod key.
        blob = self.as_(self.app, "encrypt", "--key", "alias/prod", input=b"prod data")
        self.assertOk(blob)
        seq = self.mark()
        r = self.as_(self.app, "decrypt", input=blob.raw)
        self.assertRefused(r, "key.decrypt", "key/" + self.prod_key)
        self.assertIn('policy statement "no-prod-decrypt" denies kms:Decrypt', r.err)
        [row] = self.records_since(seq)
        self.assertEqual((row["principal"], row["outcome"], row["params"]["rule"]),
                         (self.app, "denied", "policy:no-prod-decrypt"))

    def test_the_secret_a_group_may_read_and_only_it(self):
        r = self.as_(self.ci, "secret", "get", "app/db")
        self.assertOk(r)
        self.assertEqual(r.out.rstrip("\n"), SECRET_VALUE)
        r = self.as_(self.ci, "secret", "list")
        self.assertRefused(r, "secret.list", "vault/")

    def test_the_auditor_reads_every_use_but_does_no_cryptography(self):
        blob = self.as_(self.app, "encrypt", "--key", "alias/app", input=b"for the auditor")
        self.assertOk(blob)
        rows = self.as_(self.auditor, "audit", "list", "--principal", self.app, "--json")
        self.assertOk(rows)
        self.assertTrue(any(r["action"] == "key.encrypt" for r in rows.json()["items"]))
        self.assertOk(self.as_(self.auditor, "key", "describe", "alias/app"))
        self.assertRefused(self.as_(self.auditor, "decrypt", input=blob.raw), "key.decrypt",
                           "key/" + self.app_key)
        self.assertRefused(self.as_(self.auditor, "secret", "get", "app/db"), "secret.get",
                           "secret/app/db")

    def test_the_service_writes_no_audit_export_for_a_client(self):
        # A path the service's user can write and the auditor cannot: no confused deputy.
        dest = os.path.join(self.run_dir, "export.jsonl")
        seq = self.mark()
        r = self.as_(self.auditor, "audit", "export", "--output", dest)
        self.assertError(r, kmsenv.USAGE, "does not write audit exports", hint="audit list")
        self.assertFalse(os.path.exists(dest))
        [row] = self.records_since(seq)
        self.assertEqual((row["principal"], row["action"], row["params"]["rule"]),
                         (self.auditor, "agent.request", "service-writes-no-files"))

    def test_the_use_only_socket_serves_key_use_and_refuses_key_management(self):
        blob = self.as_(self.app, "encrypt", "--key", "alias/app", input=b"ci artifact",
                        server=self.use_only)
        self.assertOk(blob)
        seq = self.mark()
        r = self.as_(self.admin, "key", "create", server=self.use_only)
        self.assertError(r, kmsenv.REFUSED, "not served on the use-only socket",
                         hint="full socket")
        [row] = self.records_since(seq)
        self.assertEqual((row["principal"], row["action"], row["outcome"],
                          row["params"]["rule"]),
                         (self.admin, "agent.request", "denied", "use-only-socket"))
        # The same request on the full socket: the administrator's role allows it.
        created = self.as_(self.admin, "key", "create", "--description", "by the admin")
        self.assertOk(created)
        self.assertRefused(self.as_(self.admin, "encrypt", "--key", created.out.strip(),
                                    input=b"x"), "key.encrypt", "key/")

    def test_files_go_through_the_service_as_data_keys_decided_per_key(self):
        d = self.home[self.app]
        plain = os.path.join(d, "report.txt")
        with open(plain, "wb") as f:
            f.write(b"quarterly numbers\n" * 1000)
        os.chown(plain, *UnixUsers.ids(self.app)[:2])
        enc = os.path.join(d, "report.kms")
        self.assertOk(self.as_(self.app, "file", "encrypt", "--key", "alias/app", plain,
                               "-o", enc))
        out = self.as_(self.app, "file", "decrypt", enc, "-o", "-")
        self.assertOk(out)
        self.assertEqual(out.raw, b"quarterly numbers\n" * 1000)
        # The auditor may not use the key: neither may it open the file.
        seq = self.mark()
        shutil.copy(enc, os.path.join(self.home[self.auditor], "report.kms"))
        os.chown(os.path.join(self.home[self.auditor], "report.kms"),
                 *UnixUsers.ids(self.auditor)[:2])
        r = self.as_(self.auditor, "file", "decrypt", "report.kms", "-o", "-")
        self.assertEqual(r.rc, kmsenv.REFUSED, r.show())
        self.assertEqual(r.raw, b"")
        rows = self.records_since(seq)
        self.assertEqual([(x["principal"], x["action"], x["outcome"]) for x in rows],
                         [(self.auditor, "file.decrypt", "denied")])

    def test_only_the_services_own_user_reloads_or_reads_its_status(self):
        r = self.as_(self.app, "serve", "status")
        self.assertError(r, kmsenv.REFUSED, "only the service's own user",
                         hint="as the service's own user")
        r = self.as_(self.app, "serve", "reload")
        self.assertError(r, kmsenv.REFUSED, "only the service's own user")
        st = self.as_(self.svc, "serve", "status", "--json")
        self.assertOk(st)
        self.assertEqual(st.json()["policy"]["statements"], STATEMENTS)

    def test_reload_keeps_the_old_policy_on_a_problem_and_takes_a_good_one_on_sighup(self):
        try:
            good = self.policy_text()
            with open(self.policy, "a") as f:
                f.write('\n[[statements]]\neffect = "perhaps"\n')
            seq = self.mark()
            r = self.as_(self.svc, "serve", "reload")
            line = len(good.splitlines()) + 3  # after a blank line and [[statements]]
            self.assertError(r, kmsenv.USAGE, "policy.toml has 4 problems",
                             f"{line}:10: statements[{STATEMENTS}].effect: must be")
            [row] = self.records_since(seq)
            self.assertEqual((row["action"], row["outcome"]), ("service.reload", "error"))
            # The old policy still decides.
            self.assertOk(self.as_(self.ci, "encrypt", "--key", "alias/app", input=b"x"))
            self.assertRefused(self.as_(self.outsider, "encrypt", "--key", "alias/app",
                                        input=b"x"), "key.encrypt", "alias/app")
            # A good policy that lets the outsider encrypt, loaded by SIGHUP.
            self.write_policy(POLICY + '\n[[statements]]\nsid = "outsider-now"\neffect = "allow"'
                              '\nprincipals = ["user:{outsider}"]\nactions = ["kms:Encrypt"]'
                              '\nresources = ["alias/app"]\n')
            seq = self.mark()
            self.service.send_signal(signal.SIGHUP)
            for _ in range(100):
                rows = [x for x in self.records_since(seq) if x["action"] == "service.reload"]
                if rows:
                    break
                threading.Event().wait(0.1)
            self.assertEqual(len(rows), 1)
            self.assertEqual(rows[0]["outcome"], "ok")
            self.assertEqual(rows[0]["params"]["policy"]["sha256"],
                             kmsenv.sha256_file(self.policy))
            self.assertEqual(rows[0]["params"]["policy"]["statements"], STATEMENTS + 1)
            r = self.as_(self.outsider, "encrypt", "--key", "alias/app", input=b"x")
            self.assertOk(r)
        finally:
            self.write_policy(POLICY)
            r = self.as_(self.svc, "serve", "reload", "--json")
            self.assertOk(r)
            self.assertEqual(r.json()["statements"], STATEMENTS)

    def test_the_isv_uses_the_customers_key_only_through_its_grant_until_it_is_revoked(self):
        # The customer (the service's own user administers grants) lets the ISV use its key for
        # one tenant.
        g = self.as_(self.svc, "grant", "create", "--key", "alias/customer", "--grantee",
                     "user:" + self.isv, "--operations", "Encrypt,Decrypt,GenerateDataKey",
                     "--context-equals", "tenant=acme")
        self.assertOk(g)
        grant = g.out.strip()
        seq = self.mark()
        blob = self.as_(self.isv, "encrypt", "--key", "alias/customer", "--context",
                        "tenant=acme", input=b"acme data")
        self.assertOk(blob)
        out = self.as_(self.isv, "decrypt", "--context", "tenant=acme", input=blob.raw)
        self.assertOk(out)
        self.assertEqual(out.raw, b"acme data")
        r = self.as_(self.isv, "encrypt", "--key", "alias/customer", "--context",
                     "tenant=other", input=b"x")
        self.assertRefused(r, "key.encrypt", "alias/customer")
        rows = self.records_since(seq)
        self.assertEqual([(x["principal"], x["action"], x["outcome"], x["params"]["rule"])
                          for x in rows],
                         [(self.isv, "key.encrypt", "ok", "grant:" + grant),
                          (self.isv, "key.decrypt", "ok", "grant:" + grant),
                          (self.isv, "key.encrypt", "denied", "default-deny")])
        # The auditor lists every use under the grant, and cannot decrypt.
        listed = self.as_(self.auditor, "audit", "list", "--grant", grant, "--json")
        self.assertOk(listed)
        uses = [(x["principal"], x["action"]) for x in listed.json()["items"]
                if x["action"].startswith("key.")]
        self.assertEqual(sorted(uses), [(self.isv, "key.decrypt"), (self.isv, "key.encrypt")])
        self.assertRefused(self.as_(self.auditor, "decrypt", "--context", "tenant=acme",
                                    input=blob.raw), "key.decrypt", "key/" + self.acme_key)
        # Neither the ISV nor the auditor may revoke it; the customer does, for the next request.
        self.assertEqual(self.as_(self.isv, "grant", "revoke", grant).rc, kmsenv.REFUSED)
        self.assertOk(self.as_(self.svc, "grant", "revoke", grant))
        r = self.as_(self.isv, "encrypt", "--key", "alias/customer", "--context", "tenant=acme",
                     input=b"x")
        self.assertRefused(r, "key.encrypt", "alias/customer")

    def test_a_keys_own_policy_lets_the_outsider_use_that_key_and_its_deny_wins_over_a_grant(self):
        # The customer (the service's own user administers key policies) lets the outsider
        # encrypt under its key, and only under it: `resources = ["*"]` is the key itself.
        allow = ('[[statements]]\nsid = "outsider-encrypt"\neffect = "allow"\n'
                 f'principals = ["user:{self.outsider}"]\nactions = ["kms:Encrypt"]\n'
                 'resources = ["*"]\n')
        self.assertOk(self.as_(self.svc, "key", "set-policy", "alias/customer", "-", input=allow))
        self.addCleanup(self.as_, self.svc, "key", "set-policy", "alias/customer", "--remove")
        got = self.as_(self.svc, "key", "get-policy", "alias/customer")
        self.assertOk(got)
        self.assertEqual(got.out, allow)
        self.assertRefused(self.as_(self.outsider, "key", "set-policy", "alias/customer",
                                    "--remove"), "key.set_policy", "alias/customer")
        seq = self.mark()
        self.assertOk(self.as_(self.outsider, "encrypt", "--key", "alias/customer",
                               input=b"x"))
        self.assertRefused(self.as_(self.outsider, "encrypt", "--key", "alias/app", input=b"x"),
                           "key.encrypt", "alias/app")
        rows = self.records_since(seq)
        self.assertEqual([(x["principal"], x["action"], x["outcome"], x["params"]["rule"])
                          for x in rows],
                         [(self.outsider, "key.encrypt", "ok", "key-policy:outsider-encrypt"),
                          (self.outsider, "key.encrypt", "denied", "default-deny")])

        # A grant lets the ISV encrypt; the key's own explicit deny wins over it.
        g = self.as_(self.svc, "grant", "create", "--key", "alias/customer", "--grantee",
                     "user:" + self.isv, "--operations", "Encrypt")
        self.assertOk(g)
        grant = g.out.strip()
        self.addCleanup(self.as_, self.svc, "grant", "revoke", grant)
        self.assertOk(self.as_(self.isv, "encrypt", "--key", "alias/customer", input=b"x"))
        deny = allow + ('\n[[statements]]\nsid = "not-the-isv"\neffect = "deny"\n'
                        f'principals = ["user:{self.isv}"]\nactions = ["kms:*"]\n'
                        'resources = ["*"]\n')
        self.assertOk(self.as_(self.svc, "key", "set-policy", "alias/customer", "-", input=deny))
        seq = self.mark()
        self.assertRefused(self.as_(self.isv, "encrypt", "--key", "alias/customer", input=b"x"),
                           "key.encrypt", "alias/customer")
        [row] = self.records_since(seq)
        self.assertEqual((row["principal"], row["outcome"], row["params"]["rule"]),
                         (self.isv, "denied", "key-policy:not-the-isv"))
        self.assertOk(self.as_(self.svc, "key", "set-policy", "alias/customer", "--remove"))
        self.assertOk(self.as_(self.isv, "encrypt", "--key", "alias/customer", input=b"x"))

    def test_a_key_policy_that_no_longer_loads_allows_nothing_and_the_service_goes_on(self):
        # A user the key's policy names is deleted after the policy was set: the stored text no
        # longer loads (the service has not read it yet), so it allows nothing, not even to the
        # outsider it also names.
        gone = self.users.user("gone")
        text = ('[[statements]]\nsid = "gone-and-outsider"\neffect = "allow"\n'
                f'principals = ["user:{gone}", "user:{self.outsider}"]\n'
                'actions = ["kms:Encrypt"]\nresources = ["*"]\n')
        self.assertOk(self.as_(self.svc, "key", "set-policy", "alias/prod", "-", input=text))
        self.addCleanup(self.as_, self.svc, "key", "set-policy", "alias/prod", "--remove")
        subprocess.run(["userdel", gone], check=True, capture_output=True)
        seq = self.mark()
        self.assertRefused(self.as_(self.outsider, "encrypt", "--key", "alias/prod", input=b"x"),
                           "key.encrypt", "alias/prod")
        [row] = self.records_since(seq)
        self.assertEqual((row["outcome"], row["params"]["rule"]), ("denied", "default-deny"))
        self.assertEqual(self.service.poll(), None, "the service is still running")
        self.assertOk(self.as_(self.svc, "key", "get-policy", "alias/prod"))

    def test_a_secrets_own_policy_lets_the_outsider_read_that_secret_and_its_deny_wins(self):
        # app creates a secret under app/, which the file lets the group apps read; the service's
        # own user (it administers secret policies) lets the outsider read that secret, and only
        # it (`resources = ["*"]` is the secret itself), and denies it to ci.
        shared = "svc-shared-8c41f2"
        self.assertOk(self.as_(self.app, "secret", "create", "app/for-outsider", "--value-stdin",
                               input=shared.encode()))
        text = ('[[statements]]\nsid = "outsider-reads"\neffect = "allow"\n'
                f'principals = ["user:{self.outsider}"]\nactions = ["secrets:GetSecretValue"]\n'
                'resources = ["*"]\n\n'
                '[[statements]]\nsid = "not-ci"\neffect = "deny"\n'
                f'principals = ["user:{self.ci}"]\nactions = ["secrets:*"]\n'
                'resources = ["*"]\n')
        seq = self.mark()
        self.assertOk(self.as_(self.svc, "secret", "set-policy", "app/for-outsider", "-",
                               input=text))
        self.addCleanup(self.as_, self.svc, "secret", "set-policy", "app/for-outsider",
                        "--remove")
        got = self.as_(self.svc, "secret", "get-policy", "app/for-outsider")
        self.assertOk(got)
        self.assertEqual(got.out, text)
        self.assertEqual([(x["principal"], x["action"], x["params"]["rule"])
                          for x in self.records_since(seq)],
                         [(self.svc, "secret.set_policy", "service-administrator"),
                          (self.svc, "secret.get_policy", "service-administrator")])
        # Neither the outsider nor a reader of the secret may change or read its policy.
        self.assertRefused(self.as_(self.outsider, "secret", "set-policy", "app/for-outsider",
                                    "--remove"), "secret.set_policy", "secret/app/for-outsider")
        self.assertRefused(self.as_(self.app, "secret", "get-policy", "app/for-outsider"),
                           "secret.get_policy", "secret/app/for-outsider")

        seq = self.mark()
        r = self.as_(self.outsider, "secret", "get", "app/for-outsider")
        self.assertOk(r)
        self.assertEqual(r.out, shared)
        self.assertRefused(self.as_(self.outsider, "secret", "get", "app/db"), "secret.get",
                           "secret/app/db")
        self.assertRefused(self.as_(self.outsider, "secret", "describe", "app/for-outsider"),
                           "secret.describe", "secret/app/for-outsider")
        # The secret's deny wins over the file's allow for the group apps; app is still allowed.
        r = self.as_(self.ci, "secret", "get", "app/for-outsider")
        self.assertRefused(r, "secret.get", "secret/app/for-outsider")
        self.assertNotIn(shared, r.out + r.err)
        self.assertIn('the secret\'s own policy statement "not-ci" denies '
                      'secrets:GetSecretValue', r.err)
        self.assertOk(self.as_(self.ci, "secret", "get", "app/db"))
        r = self.as_(self.app, "secret", "get", "app/for-outsider")
        self.assertOk(r)
        self.assertEqual(r.out, shared)
        self.assertEqual([(x["principal"], x["action"], x["resource"], x["outcome"],
                           x["params"]["rule"]) for x in self.records_since(seq)],
                         [(self.outsider, "secret.get", "secret/app/for-outsider", "ok",
                           "secret-policy:outsider-reads"),
                          (self.outsider, "secret.get", "secret/app/db", "denied",
                           "default-deny"),
                          (self.outsider, "secret.describe", "secret/app/for-outsider", "denied",
                           "default-deny"),
                          (self.ci, "secret.get", "secret/app/for-outsider", "denied",
                           "secret-policy:not-ci"),
                          (self.ci, "secret.get", "secret/app/db", "ok",
                           "policy:apps-use-app-key"),
                          (self.app, "secret.get", "secret/app/for-outsider", "ok",
                           "policy:apps-use-app-key")])

        # Removed: the file alone decides again, from the next request.
        self.assertOk(self.as_(self.svc, "secret", "set-policy", "app/for-outsider", "--remove"))
        self.assertRefused(self.as_(self.outsider, "secret", "get", "app/for-outsider"),
                           "secret.get", "secret/app/for-outsider")
        self.assertOk(self.as_(self.ci, "secret", "get", "app/for-outsider"))

    def test_a_secret_policy_that_no_longer_loads_allows_nothing_and_the_service_goes_on(self):
        gone = self.users.user("gone2")
        text = ('[[statements]]\nsid = "gone-and-outsider"\neffect = "allow"\n'
                f'principals = ["user:{gone}", "user:{self.outsider}"]\n'
                'actions = ["secrets:GetSecretValue"]\nresources = ["*"]\n')
        self.assertOk(self.as_(self.svc, "secret", "set-policy", "app/db", "-", input=text))
        self.addCleanup(self.as_, self.svc, "secret", "set-policy", "app/db", "--remove")
        subprocess.run(["userdel", gone], check=True, capture_output=True)
        seq = self.mark()
        self.assertRefused(self.as_(self.outsider, "secret", "get", "app/db"), "secret.get",
                           "secret/app/db")
        [row] = self.records_since(seq)
        self.assertEqual((row["outcome"], row["params"]["rule"]), ("denied", "default-deny"))
        self.assertEqual(self.service.poll(), None, "the service is still running")
        # The file's allow still holds for the group apps.
        self.assertOk(self.as_(self.ci, "secret", "get", "app/db"))
        self.assertOk(self.as_(self.svc, "secret", "get-policy", "app/db"))

    def test_a_grantee_retires_its_own_grant_and_no_one_else_can(self):
        g = self.as_(self.svc, "grant", "create", "--key", "alias/customer", "--grantee",
                     "user:" + self.isv, "--operations", "Encrypt")
        self.assertOk(g)
        grant = g.out.strip()
        self.assertRefused(self.as_(self.outsider, "grant", "retire", grant), "grant.retire",
                           "grant/" + grant)
        seq = self.mark()
        self.assertOk(self.as_(self.isv, "grant", "retire", grant))
        [row] = self.records_since(seq)
        self.assertEqual((row["principal"], row["action"], row["params"]["rule"]),
                         (self.isv, "grant.retire", "grantee"))

    def test_only_the_service_user_sets_a_rotation_command_it_would_run(self):
        seq = self.mark()
        r = self.as_(self.app, "secret", "create", "app/hooked", "--generate",
                     "--rotation-command", "id > /tmp/owned")
        self.assertError(r, kmsenv.REFUSED, "rotation command",
                         hint="as the service's own user")
        [row] = self.records_since(seq)
        self.assertEqual((row["principal"], row["action"], row["outcome"],
                          row["params"]["rule"]),
                         (self.app, "agent.request", "denied",
                          "rotation-command-by-administrator"))
        # Without a command the policy allows it.
        self.assertOk(self.as_(self.app, "secret", "create", "app/plain", "--generate"))

    def test_commands_that_run_where_the_vault_is_refuse_a_server(self):
        for argv in (("init",), ("agent", "start"), ("vault", "backup", "/tmp/never.db"),
                     ("maintain",)):
            r = self.as_(self.app, *argv)
            self.assertError(r, kmsenv.USAGE, "not served by a kmsctl service")
        self.assertFalse(os.path.exists("/tmp/never.db"))

    def test_a_policy_with_problems_is_refused_at_start_naming_its_line(self):
        bad = self.kms.path("bad-policy.toml")
        with open(bad, "w") as f:
            f.write('[[statements]]\neffect = "allow"\nprincipals = ["user:nobody-such-x1"]\n'
                    'actions = ["kms:Encrypt"]\nresources = ["alias/app"]\n')
        os.chmod(bad, 0o644)
        r = self.kms.run("serve", "--socket", os.path.join(self.run_dir, "other.sock"),
                         "--policy", bad, preexec_fn=UnixUsers.as_user(self.svc))
        self.assertError(r, kmsenv.USAGE, "bad-policy.toml has 1 problem", "3:",
                         'no user named "nobody-such-x1"')
        self.assertFalse(os.path.exists(os.path.join(self.run_dir, "other.sock")))

    def test_a_forwarded_socket_authenticates_the_forwarder_not_who_connects_to_it(self):
        # The app user forwards the service's socket (as `ssh -R` would): whoever connects
        # through it acts as app, the process the service sees.
        d = os.path.join(self.shared, "fwd")
        os.mkdir(d, 0o755)
        os.chown(d, *UnixUsers.ids(self.app)[:2])
        fwd = os.path.join(d, "fwd.sock")
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        child = subprocess.Popen([python, "-c", RELAY, fwd, self.sock],
                                 preexec_fn=UnixUsers.as_user(self.app), start_new_session=True)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        for _ in range(100):
            if os.path.exists(fwd):
                break
            threading.Event().wait(0.05)
        seq = self.mark()
        r = self.as_(self.outsider, "encrypt", "--key", "alias/app", input=b"x", server=fwd)
        self.assertOk(r)
        [row] = self.records_since(seq)
        self.assertEqual((row["principal"], row["action"]), (self.app, "key.encrypt"))

    def test_one_user_holds_at_most_32_connections_and_others_are_still_served(self):
        # The outsider opens 32 connections and keeps them (each may wait 5 s for a request);
        # its 33rd is refused, while another user is served meanwhile.
        hold = ("import socket, sys, time\n"
                "s = [socket.socket(socket.AF_UNIX) for _ in range(32)]\n"
                "[x.connect(sys.argv[1]) for x in s]\n"
                "print('held', flush=True)\n"
                "time.sleep(30)\n")
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        child = subprocess.Popen([python, "-c", hold, self.sock], stdout=subprocess.PIPE,
                                 preexec_fn=UnixUsers.as_user(self.outsider),
                                 start_new_session=True)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        self.assertEqual(child.stdout.readline(), b"held\n")
        r = self.as_(self.outsider, "encrypt", "--key", "alias/app", input=b"x")
        self.assertError(r, kmsenv.UNAVAILABLE, "has 32 connections to the service open")
        self.assertOk(self.as_(self.ci, "encrypt", "--key", "alias/app", input=b"x"))

    def test_a_client_refuses_a_service_socket_in_a_directory_others_can_write(self):
        d = os.path.join(self.shared, "open")
        os.mkdir(d)
        os.chmod(d, 0o777)
        fake = os.path.join(d, "kmsctl.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(fake)
        os.chmod(fake, 0o777)
        srv.listen(1)
        self.addCleanup(srv.close)
        r = self.as_(self.app, "secret", "get", "app/db", server=fake)
        self.assertError(r, kmsenv.REFUSED, "could be another user's")

    def test_four_users_in_parallel_lose_nothing_and_each_record_names_its_user(self):
        seq = self.mark()
        blob = self.as_(self.app, "encrypt", "--key", "alias/app", input=b"load").raw
        n = 200
        work = {
            self.app: lambda i: self.as_(self.app, "decrypt", input=blob),
            self.ci: lambda i: self.as_(self.ci, *(("secret", "get", "app/db") if i % 2 else
                                                   ("encrypt", "--key", "alias/app")),
                                        input=b"%d" % i),
            self.admin: lambda i: self.as_(self.admin, "key", "describe", "alias/app"),
            self.auditor: lambda i: self.as_(self.auditor, "audit", "list", "--limit", "1",
                                             "--json"),
        }
        failures = []

        def run(user):
            for i in range(n):
                r = work[user](i)
                if r.rc != 0:
                    failures.append(r.show())
        threads = [threading.Thread(target=run, args=(u,)) for u in work]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        rows = self.records_since(seq)[1:]
        counts = {}
        for r in rows:
            self.assertEqual(r["outcome"], "ok", r)
            counts[r["principal"]] = counts.get(r["principal"], 0) + 1
        self.assertEqual(counts, {u: n for u in work})
        uids = {u: UnixUsers.ids(u)[0] for u in work}
        for r in rows:
            self.assertEqual(r["uid"], uids[r["principal"]])
        # The chain verifies, checked by the service's user on the vault itself.
        r = self.kms.run("audit", "verify", preexec_fn=UnixUsers.as_user(self.svc))
        self.assertOk(r)


if __name__ == "__main__":
    kmsenv.main()
