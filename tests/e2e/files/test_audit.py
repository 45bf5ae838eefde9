"""The two audit records of `kmsctl file encrypt` and `file decrypt` (docs/FORMAT.md §8.1,
docs/SECURITY.md §10 and §12): the key use is recorded `started`, and a second record ends it,
`ok` only once the last frame is written and the output published, else `error` (`interrupted`
for a caught SIGINT, SIGTERM or SIGHUP). A process killed outright leaves a lone `started`, which
the next command ends; an operation still running is left alone. Checked as a user sees it: exit
codes, files on disk, `audit list --json` and `audit verify`."""

import datetime
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv

KIB = 1024
FRAME = "1KiB"
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def ops_dir(kms):
    """The directory of the file operations' lock files: VAULT.ops beside a vault file; for a
    vault in PostgreSQL, VAULT_ID.ops in the user's $HOME/.local/share/kmsctl."""
    if kms.db:
        vault_id = kms.status()["vault"]["id"]
        return os.path.join(kms.home, ".local", "share", "kmsctl", vault_id + ".ops")
    return kms.vault + ".ops"


class FileAudit(kmsenv.KmsTestCase):
    def setUp(self):
        super().setUp()
        self.kms.init()
        self.kms.ok("key", "create", "--alias", "alias/files")
        self.ops = ops_dir(self.kms)

    # ---- helpers ----
    def write(self, name, data):
        path = self.kms.path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def head(self):
        return self.kms.sql("SELECT coalesce(max(seq), 0) FROM audit_log")[0][0]

    def file_records(self, after):
        """The file.* records after seq `after`, as `audit list --json` shows them, oldest first."""
        return [r for r in self.kms.records() if r["seq"] > after and
                r["action"].startswith("file.")]

    def start(self, *args):
        """kmsctl ARGS with a pipe on its standard input, started in the background."""
        return subprocess.Popen([kmsenv.KMSCTL, *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.kms.base_env(), start_new_session=True,
                                cwd=self.kms.root)

    def wait_started(self, after, p):
        """Waits until the vault holds a `started` record after seq `after`; returns its seq."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = self.kms.sql("SELECT seq FROM audit_log WHERE seq > ? AND outcome = 'started'",
                                (after,))
            if rows:
                return rows[-1][0]
            self.assertIsNone(p.poll(), "the command ended before its key use was recorded")
            time.sleep(0.02)
        self.fail("no started record within 60 s")

    def mid_stream(self, args, feed):
        """Starts ARGS, writes `feed` (a few frames) to its standard input and keeps the pipe
        open: the command is then in the middle of the body. Returns (process, started seq)."""
        before = self.head()
        p = self.start(*args)
        p.stdin.write(feed)
        p.stdin.flush()
        seq = self.wait_started(before, p)
        time.sleep(0.3)  # the frames fed are written; the command waits for the next ones
        self.assertIsNone(p.poll(), "the command did not wait for the rest of its input")
        return p, seq

    def stop(self, p, sig):
        """Sends `sig` to the command and waits for it with its standard input still open (an
        input that ends meanwhile is another story); returns (stdout, stderr)."""
        p.send_signal(sig)
        p.wait(timeout=60)
        out, err = p.stdout.read(), p.stderr.read()
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()
        return out, err

    def lock_file(self, seq):
        return os.path.join(self.ops, "%d.lock" % seq)

    def assertVerifies(self):
        r = self.kms.run("audit", "verify")
        self.assertEqual(r.rc, 0, r.show(["audit", "verify"]))

    def assertNothingLeftIn(self, directory, name):
        self.assertFalse(os.path.exists(os.path.join(directory, name)), name + " was left")
        temps = [n for n in os.listdir(directory) if ".tmp-" in n]
        self.assertEqual(temps, [], "temporary files were left")

    def assertStartThenEnd(self, recs, action, outcome, error_code):
        self.assertEqual([(r["action"], r["outcome"]) for r in recs],
                         [(action, "started"), (action, outcome)], recs)
        start, end = recs
        self.assertEqual(start["params"]["step"], "start")
        self.assertEqual(end["params"]["started_seq"], start["seq"])
        self.assertEqual(end["params"]["step"], "done" if outcome == "ok" else "end")
        self.assertEqual(end["params"]["file"], start["params"]["file"])
        self.assertEqual(end["resource"], start["resource"])
        self.assertEqual(end["error_code"], error_code)
        return start, end

    # ---- success ----
    def test_encrypt_and_decrypt_record_started_then_ok_once_the_output_is_complete(self):
        plain = os.urandom(3 * KIB + 100)
        src = self.write("plain.bin", plain)
        enc, back = self.kms.path("plain.kenc"), self.kms.path("back.bin")
        for action, args, out in (
                ("file.encrypt", ["file", "encrypt", "--key", "alias/files", "--frame-size",
                                  FRAME, "-o", enc, src], enc),
                ("file.decrypt", ["file", "decrypt", "-o", back, enc], back)):
            with self.subTest(action=action):
                before = self.head()
                self.kms.ok(*args)
                start, end = self.assertStartThenEnd(self.file_records(before), action, "ok", "")
                self.assertEqual((end["params"]["bytes"], end["params"]["frames"]),
                                 (len(plain), 4))
                self.assertIn("keys", start["params"])
                # The output was linked into place before the ok record was written: its inode
                # changed (the link) no later than the record's time.
                ctime_ms = os.stat(out).st_ctime_ns // 1_000_000
                ok_at = datetime.datetime.strptime(end["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                ok_ms = round(ok_at.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
                self.assertLessEqual(ctime_ms, ok_ms, (out, end["time"]))
        self.assertEqual(self.read(back), plain)
        self.assertEqual(os.listdir(self.ops), [], "a lock file was left")
        self.assertVerifies()

    def test_while_the_body_streams_there_is_a_started_record_and_no_output_then_ok(self):
        plain = os.urandom(6 * KIB)
        enc = self.kms.path("s.kenc")
        self.kms.ok("file", "encrypt", "--key", "alias/files", "--frame-size", FRAME, "-o", enc,
                    self.write("s.bin", plain))
        data = self.read(enc)
        for action, args, out in (
                ("file.encrypt", ["file", "encrypt", "--key", "alias/files", "--frame-size",
                                  FRAME, "-o", self.kms.path("live.kenc"), "-"],
                 self.kms.path("live.kenc")),
                ("file.decrypt", ["file", "decrypt", "-o", self.kms.path("live.bin"), "-"],
                 self.kms.path("live.bin"))):
            with self.subTest(action=action):
                before = self.head()
                whole = plain if action == "file.encrypt" else data
                p, seq = self.mid_stream(args, whole[:len(whole) // 2])
                recs = self.file_records(before)
                self.assertEqual([(r["seq"], r["outcome"]) for r in recs], [(seq, "started")])
                self.assertFalse(os.path.exists(out), "the output appeared before it was whole")
                self.assertTrue(os.path.exists(self.lock_file(seq)))
                _, err = p.communicate(whole[len(whole) // 2:], timeout=120)
                self.assertEqual(p.returncode, 0, err.decode())
                self.assertStartThenEnd(self.file_records(before), action, "ok", "")
                self.assertTrue(os.path.exists(out))
                self.assertFalse(os.path.exists(self.lock_file(seq)))
        self.assertEqual(self.read(self.kms.path("live.bin")), plain)
        self.assertVerifies()

    # ---- failure ----
    def test_a_damaged_middle_frame_ends_the_started_record_with_an_error_and_no_output(self):
        src = self.write("d.bin", os.urandom(5 * KIB))
        enc = self.kms.path("d.kenc")
        self.kms.ok("file", "encrypt", "--key", "alias/files", "--frame-size", FRAME, "-o", enc,
                    src)
        data = bytearray(self.read(enc))
        data[len(data) // 2] ^= 0x01  # inside the third of six frames
        self.write("d.kenc", bytes(data))
        before = self.head()
        r = self.kms.run("file", "decrypt", "-o", self.kms.path("d.out"), enc)
        self.assertEqual(r.rc, 5, r.show())
        self.assertIn("does not verify", r.err)
        self.assertNothingLeftIn(self.kms.root, "d.out")
        start, end = self.assertStartThenEnd(self.file_records(before), "file.decrypt", "error",
                                             "integrity")
        self.assertNotIn("bytes", end["params"])
        self.assertEqual(os.listdir(self.ops), [], "a lock file was left")
        self.assertVerifies()

    # ---- caught signals ----
    def test_sigint_sigterm_and_sighup_mid_stream_stop_cleanly_and_record_interrupted(self):
        plain = os.urandom(8 * KIB)
        enc = self.kms.path("i.kenc")
        self.kms.ok("file", "encrypt", "--key", "alias/files", "--frame-size", FRAME, "-o", enc,
                    self.write("i.bin", plain))
        data = self.read(enc)
        cases = [(signal.SIGINT, "encrypt"), (signal.SIGTERM, "encrypt"),
                 (signal.SIGINT, "decrypt"), (signal.SIGTERM, "decrypt"),
                 (signal.SIGHUP, "decrypt")]
        for sig, verb in cases:
            with self.subTest(signal=sig.name, verb=verb):
                out = self.kms.path("i-%s-%s.out" % (verb, sig.name))
                if verb == "encrypt":
                    args = ["file", "encrypt", "--key", "alias/files", "--frame-size", FRAME,
                            "-o", out, "-"]
                    feed = plain[:3 * KIB]
                else:
                    args = ["file", "decrypt", "-o", out, "-"]
                    feed = data[:len(data) // 2]
                before = self.head()
                p, seq = self.mid_stream(args, feed)
                _, err = self.stop(p, sig)
                err = err.decode()
                self.assertEqual(p.returncode, INTERRUPTED[sig], err)
                self.assertIn("kmsctl: error: interrupted by %s" % sig.name, err)
                self.assertRegex(err, r"(?m)^hint: \S")
                self.assertNothingLeftIn(self.kms.root, os.path.basename(out))
                _, end = self.assertStartThenEnd(self.file_records(before), "file.%s" % verb,
                                                 "error", "interrupted")
                self.assertEqual(end["params"]["started_seq"], seq)
                self.assertNotIn("closed_by", end["params"])
                self.assertFalse(os.path.exists(self.lock_file(seq)))
        self.assertVerifies()

    def test_sigterm_while_decrypting_to_standard_output_leaves_a_verified_prefix(self):
        plain = os.urandom(8 * KIB)
        enc = self.kms.path("o.kenc")
        self.kms.ok("file", "encrypt", "--key", "alias/files", "--frame-size", FRAME, "-o", enc,
                    self.write("o.bin", plain))
        data = self.read(enc)
        before = self.head()
        p, seq = self.mid_stream(["file", "decrypt", "-"], data[:len(data) // 2])
        out, err = self.stop(p, signal.SIGTERM)
        self.assertEqual(p.returncode, 143, err.decode())
        self.assertGreater(len(out), 0)
        self.assertEqual(out, plain[:len(out)], "what was released is a prefix of the plaintext")
        self.assertLess(len(out), len(plain))
        self.assertStartThenEnd(self.file_records(before), "file.decrypt", "error", "interrupted")
        self.assertVerifies()

    # ---- killed ----
    def test_sigkill_leaves_a_lone_started_record_that_the_next_command_ends(self):
        plain = os.urandom(8 * KIB)
        out = self.kms.path("k.kenc")
        before = self.head()
        p, seq = self.mid_stream(["file", "encrypt", "--key", "alias/files", "--frame-size",
                                  FRAME, "-o", out, "-"], plain[:3 * KIB])
        self.stop(p, signal.SIGKILL)
        self.assertEqual(p.returncode, -signal.SIGKILL)
        self.assertFalse(os.path.exists(out))
        # What the killed process left: a start without its end, and its (unlocked) lock file.
        rows = self.kms.sql("SELECT seq, outcome FROM audit_log WHERE seq > ?", (before,))
        self.assertEqual(rows, [(seq, "started")])
        self.assertTrue(os.path.exists(self.lock_file(seq)))
        self.assertEqual(kmsenv.file_mode(self.ops), 0o700)
        self.assertEqual(kmsenv.file_mode(self.lock_file(seq)), 0o600)

        self.kms.ok("status")
        recs = [r for r in self.kms.records() if r["seq"] > before]
        self.assertEqual([(r["action"], r["outcome"], r["error_code"]) for r in recs[:3]],
                         [("file.encrypt", "started", ""), ("file.encrypt", "error", "interrupted"),
                          ("vault.status", "ok", "")])
        self.assertEqual(recs[1]["params"], {"file": "-", "started_seq": seq, "step": "end",
                                             "closed_by": "next command", "host": kmsenv.HOST})
        self.assertEqual(recs[1]["resource"], recs[0]["resource"])
        self.assertFalse(os.path.exists(self.lock_file(seq)))
        self.assertVerifies()
        # Ended once: later commands add nothing for it.
        self.kms.ok("status")
        ends = [r for r in self.kms.records() if r["params"] and
                isinstance(r["params"], dict) and r["params"].get("started_seq") == seq]
        self.assertEqual(len(ends), 1, ends)

    def test_a_running_operation_is_not_ended_by_other_commands(self):
        plain = os.urandom(6 * KIB)
        out = self.kms.path("c.kenc")
        before = self.head()
        p, seq = self.mid_stream(["file", "encrypt", "--key", "alias/files", "--frame-size",
                                  FRAME, "-o", out, "-"], plain[:2 * KIB])
        self.kms.ok("status")
        self.kms.ok("audit", "verify")
        self.kms.ok("key", "create")
        self.assertTrue(os.path.exists(self.lock_file(seq)))
        ends = self.kms.sql("SELECT seq FROM audit_log WHERE seq > ? AND action = 'file.encrypt'",
                            (seq,))
        self.assertEqual(ends, [], "another command ended a running operation")
        _, err = p.communicate(plain[2 * KIB:], timeout=60)
        self.assertEqual(p.returncode, 0, err.decode())
        self.assertStartThenEnd(self.file_records(before), "file.encrypt", "ok", "")
        self.assertFalse(os.path.exists(self.lock_file(seq)))
        self.assertVerifies()

    def test_a_lock_file_without_a_start_to_end_is_removed_without_a_record(self):
        """A process killed before its start committed, or after its end was recorded and before
        it removed its lock file, leaves a lock file and nothing to end."""
        src = self.write("n.bin", b"nothing to end")
        self.kms.ok("file", "encrypt", "--key", "alias/files", src)
        ended = self.kms.sql("SELECT max(seq) FROM audit_log WHERE outcome = 'started'")[0][0]
        for seq in (ended, 100000):
            with open(self.lock_file(seq), "w"):
                pass
        before = self.head()
        self.kms.ok("status")
        self.assertEqual(os.listdir(self.ops), [])
        self.assertEqual(self.kms.sql("SELECT action FROM audit_log WHERE seq > ?", (before,)),
                         [("vault.status",)])

    # ---- listing ----
    def test_audit_list_shows_and_filters_the_started_outcome(self):
        src = self.write("l.bin", b"listed")
        self.kms.ok("file", "encrypt", "--key", "alias/files", src)
        r = self.kms.ok("audit", "list", "--outcome", "started")
        rows = r.out.splitlines()[1:]
        self.assertEqual(len(rows), 1, r.out)
        self.assertRegex(rows[0], r" file\.encrypt +file/\S+ +started$")
        listed = self.kms.json("audit", "list", "--outcome", "started", "--json")["items"]
        self.assertEqual([(x["action"], x["outcome"], x["params"]["step"]) for x in listed],
                         [("file.encrypt", "started", "start")])
        r = self.kms.run("audit", "list", "--outcome", "begun")
        self.assertError(r, 2, "--outcome")
        self.assertIn("started", r.err)


if __name__ == "__main__":
    kmsenv.main()
