"""Kills kmsctl at random instants of random commands, and checks after each kill that nothing
was lost and nothing was half done.

Each round starts one command of a mix (status, encrypt, decrypt, key create and rotate with
software and hsm protection, secret put and get, file encrypt, audit verify, vault backup,
vault restore, vault rekey, vault change-pin, init of a new vault, and commands served by a
`kmsctl agent`, whose agent is killed instead), sends it SIGKILL, SIGTERM or SIGINT after a
random delay drawn between 0 and that command's own measured duration (the median of three
runs), and waits for it. A signal that arrived after the command had finished is no kill: rounds
go on until the number of kills asked for have landed. After every round:
  - the vault opens (`kmsctl status` exits 0: this is also where kmsctl mends what the kill
    left, e.g. a token file emptied by SoftHSM2 in mid-rewrite);
  - `kmsctl audit verify` exits 0;
  - `PRAGMA integrity_check` on the vault file says ok;
  - the command happened entirely, with its `ok` audit record, or not at all: the rows it adds
    (keys, key versions, secret versions, the root key generation) grew by exactly the number
    of its `ok` records, a changed PIN has its start record and a done record means it
    changed; a `file encrypt` has its key use recorded `started` and ended by exactly one
    record (the status above ends the start of a killed one), and an `ok` end means its output
    file is there;
  - every ciphertext made so far (after each key create, rotate and rekey) still decrypts;
  - an interrupted init leaves either no vault (and `kmsctl init` then succeeds) or a vault
    that opens and verifies.

Used by robustness/test_torture.py (a short run in the suite), robustness/test_faults.py and
scripts/torture.sh (the long one).
Reproduce a failure with the seed it prints: `scripts/torture.sh KILLS SEED`.
"""

import collections
import json
import os
import random
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kmsenv  # noqa: E402

SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
PINS = ("torture-Pin-a1c3", "torture-Pin-b2d4")


class Violation(AssertionError):
    pass


class Torture:
    def __init__(self, seed, log=print):
        self.rng = random.Random(seed)
        self.seed = seed
        self.log = log
        self.kms = kmsenv.KmsEnv(pin=PINS[0])
        self.pin_index = 0
        self.stats = collections.Counter()
        self.durations = {}
        self.repairs = collections.Counter()  # token files mended, by the signal that broke them
        self.blobs = []
        self.rounds = 0
        # A shell starts background jobs with SIGINT ignored, and kmsctl would inherit that:
        # its children must get SIGINT as a terminal's Ctrl-C delivers it.
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_DFL)

    # ---- setup ----
    def setup(self):
        self.populate()
        self.measure()

    def populate(self):
        k = self.kms
        k.init("--so-pin-file", k.path("so-pin"))
        k.ok("key", "create", "--alias", "alias/sw")
        k.ok("key", "create", "--alias", "alias/hw", "--protection", "hsm")
        k.write_secret_file("value", "torture-value-0")
        k.ok("secret", "create", "app/db", "--value-file", k.path("value"))
        with open(k.path("plain"), "wb") as f:
            f.write(os.urandom(1024))
        with open(k.path("big"), "wb") as f:
            f.write(os.urandom(4 << 20))
        k.ok("encrypt", "--key", "alias/hw", "--in", k.path("plain"), "--out", k.path("blob-hw"))
        k.ok("encrypt", "--key", "alias/sw", "--in", k.path("plain"), "--out", k.path("blob-sw"))
    def measure(self):
        """How long each command takes here: the kill delays are drawn from that range."""
        k = self.kms
        for name in COMMANDS:
            times = []
            for _ in range(3):
                argv, env = self.command(name)
                t0 = time.monotonic()
                k.run(*argv, env=env)
                times.append(time.monotonic() - t0)
                self.after_success(name)
            self.durations[name] = sorted(times)[1]

    # ---- the mix ----
    def command(self, name):
        k = self.kms
        env = {}
        out = k.path("out-%d" % self.rng.randrange(1 << 30))
        if name == "status":
            return ["status"], env
        if name == "encrypt":
            return ["encrypt", "--key", self.rng.choice(["alias/sw", "alias/hw"]), "--in",
                    k.path("plain"), "--out", out], env
        if name == "decrypt":
            return ["decrypt", "--in", k.path(self.rng.choice(["blob-hw", "blob-sw"])),
                    "--out", out], env
        if name == "key-create":
            return ["key", "create"] + (["--protection", "hsm"] if self.rng.random() < 0.5
                                        else []), env
        if name == "key-rotate":
            return ["key", "rotate", self.rng.choice(["alias/sw", "alias/hw"])], env
        if name == "secret-put":
            k.write_secret_file("value", "torture-value-%d" % self.rng.randrange(1 << 30))
            return ["secret", "put", "app/db", "--value-file", k.path("value")], env
        if name == "secret-get":
            return ["secret", "get", "app/db"], env
        if name == "file-encrypt":
            return ["file", "encrypt", "--key", "alias/sw", "-o", out, k.path("big")], env
        if name == "audit-verify":
            return ["audit", "verify"], env
        if name == "backup":
            return ["vault", "backup", out], env
        if name == "restore":
            # A backup taken just before, so the restore loses nothing (what it would lose is
            # another property, tested elsewhere): the content stays, the anchor moves back.
            backup = k.path("restore-%d.db" % self.rng.randrange(1 << 30))
            k.ok("vault", "backup", backup)
            return ["vault", "restore", "--force", backup], env
        if name == "rekey":
            return ["vault", "rekey"], env
        if name == "change-pin":
            new = k.write_secret_file("new-pin", PINS[1 - self.pin_index])
            return ["vault", "change-pin", "--new-pin-file", new], env
        raise ValueError(name)

    def after_success(self, name):
        if name == "change-pin":
            self.use_pin(1 - self.pin_index)

    def use_pin(self, i):
        self.pin_index = i
        self.kms.write_secret_file("pin", PINS[i])

    # ---- state, as the file shows it ----
    def snapshot(self):
        con = sqlite3.connect("file:%s?mode=ro" % self.kms.vault, uri=True)
        try:
            q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
            return {
                "key-create": q("SELECT count(*) FROM keys"),
                "key-rotate": q("SELECT count(*) FROM key_versions") - q("SELECT count(*) FROM keys"),
                "secret-put": q("SELECT count(*) FROM secret_versions"),
                "rekey": q("SELECT root_key_gen FROM vault_meta"),
                "seq": q("SELECT coalesce(max(seq), 0) FROM audit_log"),
            }
        finally:
            con.close()

    def records_since(self, seq):
        con = sqlite3.connect("file:%s?mode=ro" % self.kms.vault, uri=True)
        try:
            return con.execute("SELECT action, outcome, params FROM audit_log WHERE seq > ? "
                               "ORDER BY seq", (seq,)).fetchall()
        finally:
            con.close()

    def integrity(self):
        con = sqlite3.connect("file:%s?mode=ro" % self.kms.vault, uri=True)
        try:
            return con.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            con.close()

    # ---- one round ----
    def kill_round(self, i):
        name = self.rng.choice(COMMANDS)
        sig = self.rng.choice(SIGNALS)
        delay = self.rng.uniform(0, self.durations[name])
        before = self.snapshot()
        argv, env = self.command(name)
        where = "round %d (seed %d): %s killed by %s after %.1f ms" % (
            i, self.seed, " ".join(argv), sig.name, delay * 1000)
        landed = interrupt(self.kms.popen(*argv, env=env), delay, sig)
        self.stats[(name, sig.name, "landed" if landed else "missed")] += 1
        self.check(name, where, before, sig, argv)
        return landed

    def status(self):
        return self.kms.run("status")

    def check(self, name, where, before, sig, argv=None):
        r = self.status()
        pin_changed = False
        if name == "change-pin" and r.rc != 0:
            old = self.pin_index
            self.use_pin(1 - old)
            r = self.status()
            pin_changed = r.rc == 0
            if not pin_changed:
                self.use_pin(old)
        if r.rc != 0:
            raise Violation("%s: the vault no longer opens:\n%s" % (where, r.show(["status"])))
        rv = self.kms.run("audit", "verify")
        if rv.rc != 0:
            raise Violation("%s: audit verify fails:\n%s" % (where, rv.show(["audit", "verify"])))
        ic = self.integrity()
        if ic != "ok":
            raise Violation("%s: PRAGMA integrity_check says %s" % (where, ic))
        after = self.snapshot()
        records = self.records_since(before["seq"])
        repaired = sum(1 for a, _, _ in records if a == "vault.repair_token")
        if sig is not None:
            self.repairs[sig.name] += repaired
        action = ACTIONS.get(name)
        if name in ("key-create", "key-rotate", "secret-put", "rekey"):
            oks = sum(1 for a, o, _ in records if a == action and o == "ok")
            grew = after[name] - before[name]
            if grew != oks:
                raise Violation("%s: %s grew by %d but the log has %d ok %s records" % (
                    where, name, grew, oks, action))
        if name in ("key-rotate", "key-create", "rekey"):
            self.roundtrip(where)
        if name == "file-encrypt":
            self.check_file_records(where, records, argv)
        if name == "change-pin":
            steps = [p for a, o, p in records if a == "vault.change_pin" and o == "ok"]
            if pin_changed and not steps:
                raise Violation("%s: the PIN changed without a vault.change_pin record" % where)
            if any('"done"' in (p or "") for p in steps) and not pin_changed:
                raise Violation("%s: vault.change_pin is recorded done but the PIN is the old one"
                                % where)

    def check_file_records(self, where, records, argv):
        """Every file.encrypt key use is `started` and has exactly one end record naming it;
        `ok` is an end whose output exists."""
        recs = [(o, json.loads(p)) for a, o, p in records if a == "file.encrypt"]
        starts = [p for o, p in recs if p.get("step") == "start" and o == "started"]
        ends = [(o, p) for o, p in recs if "started_seq" in p]
        if any(o == "ok" and p.get("step") != "done" for o, p in recs):
            raise Violation("%s: a file.encrypt ok record that is not an end: %s" % (where, recs))
        if len(ends) != len(starts):
            raise Violation("%s: %d file.encrypt starts but %d ends: %s" % (
                where, len(starts), len(ends), recs))
        out = argv[argv.index("-o") + 1] if argv and "-o" in argv else None
        if out and any(o == "ok" for o, _ in ends) and not os.path.exists(out):
            raise Violation("%s: file.encrypt recorded ok but %s is missing" % (where, out))

    def roundtrip(self, where):
        """Encrypts under both keys' current versions and decrypts again; the blobs are kept,
        and every one of them must still decrypt at the end."""
        k = self.kms
        for alias in ("alias/sw", "alias/hw"):
            blob = k.path("kept-%d" % len(self.blobs))
            for argv in (["encrypt", "--key", alias, "--in", k.path("plain"), "--out", blob],
                         ["decrypt", "--in", blob, "--out", blob + ".out"]):
                r = k.run(*argv)
                if r.rc != 0:
                    raise Violation("%s: then %s fails:\n%s" % (where, argv[0], r.show(argv)))
            self.blobs.append(blob)
            self.same_as_plain(blob + ".out", where)

    def same_as_plain(self, path, where):
        with open(self.kms.path("plain"), "rb") as a, open(path, "rb") as b:
            if a.read() != b.read():
                raise Violation("%s: %s does not decrypt to the plaintext" % (where, path))
        os.unlink(path)

    def check_all_blobs(self):
        for blob in self.blobs:
            r = self.kms.run("decrypt", "--in", blob, "--out", blob + ".out")
            if r.rc != 0:
                raise Violation("after %d rounds (seed %d): %s no longer decrypts:\n%s" % (
                    self.rounds, self.seed, blob, r.show(["decrypt"])))
            self.same_as_plain(blob + ".out", blob)

    # ---- init ----
    def init_round(self, i):
        k = self.kms
        vault = k.path("init-%d" % i, "vault.db")
        so_pin = k.path("init-%d.so" % i)
        env = {"KMSCTL_VAULT": vault}
        sig = self.rng.choice(SIGNALS)
        delay = self.rng.uniform(0, self.durations.get("init", 0.2))
        where = "round %d (seed %d): init killed by %s after %.1f ms" % (
            i, self.seed, sig.name, delay * 1000)
        t0 = time.monotonic()
        p = k.popen("init", "--so-pin-file", so_pin, env=env)
        landed = interrupt(p, delay, sig)
        if p.returncode == 0:  # learn how long an init takes here
            self.durations["init"] = time.monotonic() - t0
        self.stats[("init", sig.name, "landed" if landed else "missed")] += 1
        if os.path.exists(vault):
            for argv in (["status"], ["audit", "verify"]):
                r = k.run(*argv, env=env)
                if r.rc != 0:
                    raise Violation("%s: the published vault fails:\n%s" % (where, r.show(argv)))
        else:
            if os.path.exists(so_pin):
                os.unlink(so_pin)
            r = k.run("init", "--so-pin-file", so_pin, env=env)
            if r.rc != 0:
                raise Violation("%s: init cannot be run again:\n%s" % (where, r.show(["init"])))
        return landed

    # ---- the agent ----
    def agent_round(self, i):
        """A command served by a `kmsctl agent`; the agent, not the client, is killed."""
        k = self.kms
        r = k.run("agent", "start", "--json", "--socket", k.path("agent.sock"))
        if r.rc != 0:
            raise Violation("round %d (seed %d): agent start fails:\n%s" % (
                i, self.seed, r.show(["agent", "start"])))
        agent = json.loads(r.out)["pid"]
        name = self.rng.choice(AGENT_COMMANDS)
        sig = self.rng.choice(SIGNALS)
        delay = self.rng.uniform(0, self.durations[name])
        before = self.snapshot()
        argv, env = self.command(name)
        env["KMSCTL_AGENT_SOCK"] = k.path("agent.sock")
        where = "round %d (seed %d): the agent serving %s killed by %s after %.1f ms" % (
            i, self.seed, " ".join(argv), sig.name, delay * 1000)
        p = k.popen(*argv, env=env)
        time.sleep(delay)
        landed = p.poll() is None  # the agent was still serving the command
        os.kill(agent, sig)
        p.communicate(timeout=300)
        deadline = time.monotonic() + 30
        while alive(agent):
            if time.monotonic() > deadline:
                os.kill(agent, signal.SIGKILL)
                raise Violation("%s: the agent did not stop within 30 s" % where)
            time.sleep(0.01)
        self.stats[("agent " + name, sig.name, "landed" if landed else "missed")] += 1
        self.check(name, where, before, sig)
        return landed

    def run(self, kills):
        self.setup()
        self.log("torture: seed %d, %d kills; command durations (ms): %s" % (
            self.seed, kills, ", ".join("%s %.0f" % (n, d * 1000)
                                        for n, d in sorted(self.durations.items()))))
        t0 = time.monotonic()
        landed = 0
        # A signal sent after the command had finished is no kill: run until `kills` landed
        # (each round is checked either way).
        while landed < kills and self.rounds < 10 * kills:
            i = self.rounds
            draw = self.rng.random()
            if draw < INIT_SHARE:
                hit = self.init_round(i)
            elif draw < INIT_SHARE + AGENT_SHARE:
                hit = self.agent_round(i)
            else:
                hit = self.kill_round(i)
            self.rounds += 1
            landed += hit
            if hit and landed % 100 == 0:
                self.check_all_blobs()
                self.log("torture: %d/%d kills in %d rounds, %d token repairs, %.0f s" % (
                    landed, kills, self.rounds, sum(self.repairs.values()),
                    time.monotonic() - t0))
        self.check_all_blobs()
        return self.stats

    def cleanup(self):
        self.kms.cleanup()


COMMANDS = ("status", "encrypt", "decrypt", "key-create", "key-rotate", "secret-put",
            "secret-get", "file-encrypt", "audit-verify", "backup", "restore", "rekey",
            "change-pin")
ACTIONS = {"key-create": "key.create", "key-rotate": "key.rotate", "secret-put": "secret.put",
           "rekey": "vault.rekey"}
INIT_SHARE = 0.05
# Commands an agent serves (it runs no hooks and no vault administration).
AGENT_COMMANDS = ("status", "encrypt", "decrypt", "key-create", "key-rotate", "secret-put",
                  "secret-get", "audit-verify")
AGENT_SHARE = 0.1


def interrupt(p, delay, sig):
    """Sends `sig` to the running command `p` after `delay` seconds and waits for it; whether the
    signal landed (ended the command, or stopped it: a file stream catches SIGINT and SIGTERM
    and exits 128 + the signal's number) rather than arriving after it had finished."""
    time.sleep(delay)
    try:
        p.send_signal(sig)
    except ProcessLookupError:
        pass
    p.communicate(timeout=300)
    return p.returncode in (-sig, 128 + sig)


def alive(pid):
    """Running, and not a zombie waiting for a parent that is not us."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def landed(stats):
    return sum(n for (_, _, how), n in stats.items() if how == "landed")


def summary(stats):
    by_sig = collections.Counter()
    for (name, sig, how), n in stats.items():
        if how == "landed":
            by_sig[sig] += n
    rounds = sum(stats.values())
    return "%d kills (%s) in %d rounds (in the others the command had finished first)" % (
        landed(stats), ", ".join("%s %d" % kv for kv in sorted(by_sig.items())), rounds)


def main(argv):
    kills = int(argv[1]) if len(argv) > 1 else 1000
    seed = int(argv[2]) if len(argv) > 2 else random.SystemRandom().randrange(1 << 31)
    t = Torture(seed)
    try:
        stats = t.run(kills)
    except Violation as e:
        print("torture: FAILED: %s" % e)
        print("torture: the vault is kept in %s" % t.kms.root)
        return 1
    print("torture: passed: %s; token files mended after %s; seed %d" % (
        summary(stats), ", ".join("%s %d" % (g.name, t.repairs[g.name]) for g in SIGNALS), seed))
    for key in sorted(stats):
        print("  %-20s %-8s %-8s %d" % (key + (stats[key],)))
    t.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
