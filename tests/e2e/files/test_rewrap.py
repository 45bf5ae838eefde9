"""file rewrap through the real binary: after a rotation the header moves to the newest version,
the body stays byte for byte the same, the file still decrypts and `file inspect` no longer shows
the old version; --to-key moves a file to another key; several files in one call; a damaged file
is refused and left as it was; a rewrap is recorded `ok` only once the new file is in place."""

import os
import resource
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import Envelope, FAILED, FilesTestCase, INTEGRITY, REFUSED, file_mode, read, write

MIB = 1 << 20


class Rewrap(FilesTestCase):
    def test_rewrap_after_rotation_keeps_the_body_and_moves_to_the_newest_version(self):
        key = self.vault.create_key()
        d = self.dir("rot")
        files = [os.path.join(d, f"r{i}.bin") for i in range(2)]
        pts = [os.urandom(3000 + i) for i in range(2)]
        for f, pt in zip(files, pts):
            write(f, pt)
        self.vault.ok("file", "encrypt", "--key", key, "--frame-size", "1KiB",
                      "--context", "env=ci", *files)
        before = [Envelope(read(f + ".kenc")) for f in files]
        self.assertEqual(before[0].keys(), [(key, 1)])
        self.vault.ok("key", "rotate", key)
        seq = self.vault.sql("SELECT max(seq) FROM audit_log")[0][0]
        r = self.vault.ok("file", "rewrap", *[f + ".kenc" for f in files])
        self.assertEqual(r.out, "")
        self.assertIn(f"{key} v2", r.err)
        recs = self.vault.audit_rows(seq)
        # Each file: its key use (`started`, in the transaction that rewraps the data key), then
        # `ok` once the new file has replaced the old one.
        self.assertEqual([(x["action"], x["outcome"]) for x in recs],
                         [("file.rewrap", "started"), ("file.rewrap", "ok")] * 2)
        self.assertEqual(recs[0]["params"]["from_keys"], [{"key_id": key, "version": 1}])
        self.assertEqual(recs[0]["params"]["to_keys"], [{"key_id": key, "version": 2}])
        self.assertEqual(recs[0]["params"]["step"], "start")
        self.assertEqual(recs[1]["params"], {"file": files[0] + ".kenc", "step": "done",
                                             "started_seq": recs[0]["seq"],
                                             "host": kmsenv.HOST})
        for f, pt, old in zip(files, pts, before):
            new = Envelope(read(f + ".kenc"))
            self.assertEqual(new.body, old.body, "the body must be byte-identical")
            self.assertEqual(new.salt, old.salt)
            self.assertEqual(new.keys(), [(key, 2)])
            self.assertEqual(file_mode(f + ".kenc"), 0o600)
            j = self.vault.json("file", "inspect", "--json", f + ".kenc")
            self.assertEqual([(x["key_id"], x["key_version"]) for x in j["recipients"]], [(key, 2)])
            os.unlink(f)
            self.vault.ok("file", "decrypt", "--context", "env=ci", f + ".kenc")
            self.assertEqual(read(f), pt)
        self.assertEqual(sorted(os.listdir(d)), sorted([os.path.basename(f) for f in files] +
                                                       [os.path.basename(f) + ".kenc" for f in files]))

    def test_rewrap_to_another_key_and_the_old_key_can_no_longer_open_it(self):
        a = self.vault.create_key()
        b = self.vault.create_key()
        d = self.dir("to")
        src = os.path.join(d, "t.bin")
        write(src, b"moving house")
        self.vault.ok("file", "encrypt", "--key", a, src)
        body = Envelope(read(src + ".kenc")).body
        self.vault.ok("file", "rewrap", "--to-key", b, src + ".kenc")
        env = Envelope(read(src + ".kenc"))
        self.assertEqual(env.keys(), [(b, 1)])
        self.assertEqual(env.body, body)
        self.vault.ok("key", "disable", b)
        self.assertError(self.vault.run("file", "decrypt", "--force", src + ".kenc"), REFUSED,
                         "disabled")
        self.vault.ok("key", "enable", b)
        self.vault.ok("file", "decrypt", "--force", src + ".kenc")
        self.assertEqual(read(src), b"moving house")

    def test_a_rewrap_whose_new_file_cannot_be_written_is_recorded_failed_and_changes_nothing(self):
        # The key use is recorded `started` before the new file is written; a write that fails
        # (here: past the file size limit, as on a full disk) ends it with `error`, never `ok`,
        # and leaves the old file as it was.
        key = self.vault.create_key()
        d = self.dir("full")
        src = os.path.join(d, "big.bin")
        write(src, os.urandom(8 * MIB))
        self.vault.ok("file", "encrypt", "--key", key, src)
        self.vault.ok("key", "rotate", key)
        before = read(src + ".kenc")
        seq = self.vault.sql("SELECT max(seq) FROM audit_log")[0][0]

        def small_files():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (6 * MIB, 6 * MIB))

        r = self.vault.run("file", "rewrap", src + ".kenc", preexec_fn=small_files)
        self.assertError(r, FAILED, f"cannot copy the body of {src}.kenc")
        self.assertEqual(read(src + ".kenc"), before)
        recs = self.vault.audit_rows(seq)
        self.assertEqual([(x["action"], x["outcome"], x["error_code"]) for x in recs],
                         [("file.rewrap", "started", ""), ("file.rewrap", "error", "failed")])
        self.assertEqual(recs[1]["params"]["started_seq"], recs[0]["seq"])
        self.assertEqual(recs[1]["params"]["step"], "end")
        self.assertEqual(sorted(os.listdir(d)), ["big.bin", "big.bin.kenc"])
        self.vault.ok("audit", "verify")
        # Without the limit, the same file rewraps.
        self.vault.ok("file", "rewrap", src + ".kenc")
        self.assertEqual(Envelope(read(src + ".kenc")).keys(), [(key, 2)])

    def test_rewrap_refuses_a_damaged_file_and_leaves_it_unchanged(self):
        key = self.vault.create_key()
        d = self.dir("bad")
        src = os.path.join(d, "b.bin")
        write(src, b"x" * 2000)
        self.vault.ok("file", "encrypt", "--key", key, src)
        env = Envelope(read(src + ".kenc"))
        damaged = bytearray(env.data)
        damaged[env.tag_off] ^= 1
        write(src + ".kenc", bytes(damaged))
        r, rec = self.audited("file", "rewrap", src + ".kenc", action="file.rewrap", rc=INTEGRITY,
                              error_code="integrity")
        self.assertError(r, INTEGRITY, "header was altered")
        damaged[0] ^= 1  # and a header that does not even parse
        write(src + ".kenc", bytes(damaged))
        r, rec = self.audited("file", "rewrap", src + ".kenc", action="file.rewrap", rc=INTEGRITY)
        self.assertEqual(rec["params"]["stage"], "header")
        self.assertEqual(read(src + ".kenc"), bytes(damaged))
        self.assertNoOutput(d)


if __name__ == "__main__":
    kmsenv.main()
