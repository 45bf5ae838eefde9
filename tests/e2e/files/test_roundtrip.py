"""file encrypt / decrypt / inspect through the real binary: round trips at every size around the
frame boundaries and of 100 MiB, files and pipes, several inputs in one call (one audit record
each), default output names, 0600 outputs, --force, --json, and the progress bar's rules."""

import json
import os
import pty
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (KMSCTL, Envelope, FilesTestCase, REFUSED, USAGE, file_mode, read, sha256_file,
                    write)

KIB = 1024


class RoundTrip(FilesTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.vault.create_key("--alias", "alias/build")

    def test_files_of_every_size_around_the_frame_size_round_trip_to_default_names(self):
        d = self.dir("sizes")
        out = self.dir("sizes-out")
        for size in (0, 1, KIB - 1, KIB, KIB + 1, 5 * KIB + 3):
            with self.subTest(size=size):
                src = os.path.join(d, f"f{size}.bin")
                pt = os.urandom(size)
                write(src, pt)
                r, rec, end = self.file_audited("file", "encrypt", "--key", "alias/build",
                                                "--frame-size", "1KiB", src, action="file.encrypt")
                self.assertEqual((r.raw, r.err), (b"", ""))
                enc = src + ".kenc"
                self.assertEqual(file_mode(enc), 0o600)
                env = Envelope(read(enc))
                self.assertEqual(env.frame_size, KIB)
                self.assertEqual(len(env.frames()), size // KIB + 1)
                self.assertEqual(env.keys(), [(self.key, 1)])
                self.assertEqual(rec["params"]["keys"], [{"key_id": self.key, "version": 1}])
                self.assertEqual((end["params"]["bytes"], end["params"]["frames"]),
                                 (size, size // KIB + 1))
                r, rec, end = self.file_audited("file", "decrypt", "--out-dir", out, enc,
                                                action="file.decrypt")
                self.assertEqual((end["params"]["bytes"], end["params"]["frames"]),
                                 (size, size // KIB + 1))
                back = os.path.join(out, f"f{size}.bin")
                self.assertEqual(read(back), pt)
                self.assertEqual(file_mode(back), 0o600)

    def test_pipes_stdin_to_stdout_both_ways(self):
        pt = os.urandom(3 * KIB + 17)
        enc = self.vault.ok("file", "encrypt", "--key", self.key, "--frame-size", "1KiB", "-",
                            input=pt).raw
        self.assertEqual(enc[:4], b"KENC")
        self.assertEqual(len(Envelope(enc).frames()), 4)
        self.assertEqual(self.vault.ok("file", "decrypt", "-", input=enc).raw, pt)
        # A pipe in, a file out, and back through -o.
        d = self.dir("pipes")
        self.vault.ok("file", "encrypt", "--key", self.key, "-o", os.path.join(d, "p.kenc"), "-",
                      input=pt)
        self.assertEqual(self.vault.ok("file", "decrypt", os.path.join(d, "p.kenc"), "-o", "-").raw,
                         pt)

    def test_100_mib_round_trip_through_files_and_through_a_pipe(self):
        d = self.dir("big")
        src = os.path.join(d, "big.bin")
        with open(src, "wb") as f:
            for _ in range(100):
                f.write(os.urandom(1 << 20))
        r = self.vault.ok("file", "encrypt", "--key", self.key, src)
        self.assertEqual(r.err, "", "no progress bar when stderr is not a terminal")
        enc = src + ".kenc"
        self.assertEqual(len(Envelope(read(enc)[:4096]).salt), 32)
        r = self.vault.ok("file", "decrypt", "-o", os.path.join(d, "back.bin"), enc)
        self.assertEqual(r.err, "")
        self.assertEqual(sha256_file(os.path.join(d, "back.bin")), sha256_file(src))
        os.unlink(os.path.join(d, "back.bin"))
        # The same file decrypted to stdout, streaming.
        p = subprocess.run([KMSCTL, "file", "decrypt", "-o", "-", enc], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.vault.base_env(),
                           cwd=self.vault.root, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        import hashlib
        self.assertEqual(hashlib.sha256(p.stdout).hexdigest(), sha256_file(src))

    def test_several_inputs_in_one_call_write_a_start_and_an_end_record_each(self):
        d = self.dir("many")
        names = [os.path.join(d, f"a{i}.txt") for i in range(3)]
        for i, n in enumerate(names):
            write(n, f"file {i}\n".encode() * (i + 1))
        before = self.vault.sql("SELECT max(seq) FROM audit_log")[0][0]
        r = self.vault.ok("file", "encrypt", "--json", "--key", self.key, *names)
        lines = [json.loads(l) for l in r.out.splitlines()]
        self.assertEqual([l["input"] for l in lines], names)
        self.assertEqual([l["output"] for l in lines], [n + ".kenc" for n in names])
        self.assertEqual(lines[0]["keys"], [{"key_id": self.key, "version": 1}])
        recs = self.vault.audit_rows(before)
        self.assertEqual([x["action"] for x in recs], ["file.encrypt"] * 6)
        self.assertEqual([x["outcome"] for x in recs], ["started", "ok"] * 3)
        self.assertEqual([x["params"]["file"] for x in recs], [n for n in names for _ in "se"])
        self.assertEqual([x["params"]["started_seq"] for x in recs[1::2]],
                         [x["seq"] for x in recs[0::2]])
        for n in names:
            os.unlink(n)
        before = self.vault.sql("SELECT max(seq) FROM audit_log")[0][0]
        self.vault.ok("file", "decrypt", *[n + ".kenc" for n in names])
        recs = self.vault.audit_rows(before)
        self.assertEqual([(x["action"], x["outcome"]) for x in recs],
                         [("file.decrypt", "started"), ("file.decrypt", "ok")] * 3)
        for i, n in enumerate(names):
            self.assertEqual(read(n), f"file {i}\n".encode() * (i + 1))

    def test_existing_outputs_are_refused_without_force_and_left_as_they_were(self):
        d = self.dir("force")
        src = os.path.join(d, "x.txt")
        write(src, b"new content")
        write(src + ".kenc", b"keep me")
        r = self.vault.run("file", "encrypt", "--key", self.key, src)
        self.assertError(r, REFUSED, "already exists", hint="--force")
        self.assertEqual(read(src + ".kenc"), b"keep me")
        self.vault.ok("file", "encrypt", "--key", self.key, "--force", src)
        self.assertEqual(read(src + ".kenc")[:4], b"KENC")
        self.assertEqual(file_mode(src + ".kenc"), 0o600)
        r = self.vault.run("file", "decrypt", src + ".kenc")
        self.assertError(r, REFUSED, "already exists")
        self.assertEqual(read(src), b"new content")
        self.vault.ok("file", "decrypt", "--force", src + ".kenc")
        self.assertEqual(read(src), b"new content")

    def test_usage_errors_name_the_problem(self):
        d = self.dir("usage")
        src = os.path.join(d, "u.txt")
        write(src, b"u")
        self.assertError(self.vault.run("file", "encrypt", "--key", self.key, "--frame-size",
                                        "12", src), USAGE, "--frame-size")
        self.assertError(self.vault.run("file", "decrypt", src), USAGE, ".kenc", hint="-o")
        self.assertError(self.vault.run("file", "encrypt", "--key", self.key, "-o",
                                        os.path.join(d, "o"), src, src), USAGE, "several inputs")
        self.assertError(self.vault.run("file", "encrypt", "--key", "alias/nope", src),
                         kmsenv.NOT_FOUND, "alias/nope")
        self.assertFalse(os.path.exists(src + ".kenc"))

    def test_encrypted_bytes_are_never_written_to_a_terminal(self):
        master, slave = pty.openpty()
        try:
            p = subprocess.run([KMSCTL, "file", "encrypt", "--key", self.key, "-"],
                               input=b"secret", stdout=slave, stderr=subprocess.PIPE,
                               env=self.vault.base_env(), cwd=self.vault.root, timeout=60)
        finally:
            os.close(slave)
            os.close(master)
        self.assertEqual(p.returncode, USAGE, p.stderr)
        self.assertIn(b"kmsctl: error: refusing to write encrypted binary data to a terminal",
                      p.stderr)
        self.assertIn(b"hint: ", p.stderr)

    def test_inspect_shows_the_header_without_the_vault(self):
        d = self.dir("inspect")
        src = os.path.join(d, "i.bin")
        write(src, os.urandom(2500))
        self.vault.ok("file", "encrypt", "--key", self.key, "--context", "app=billing",
                      "--frame-size", "1KiB", src)
        # No PIN, no vault: inspect reads the header alone.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.vault.home}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        p = subprocess.run([KMSCTL, "file", "inspect", "--json", src + ".kenc"],
                           capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        j = json.loads(p.stdout)
        self.assertEqual(j["format_version"], 1)
        self.assertEqual(j["frame_size"], 1024)
        self.assertEqual(j["context"], {"app": "billing"})
        self.assertEqual(j["plaintext_bytes"], 2500)
        self.assertEqual(j["recipients"], [{"type": "vault-key", "key_id": self.key,
                                            "key_version": 1}])
        text = self.vault.ok("file", "inspect", src + ".kenc").out
        self.assertIn(f"key {self.key} version 1", text)
        self.assertIn("2500 bytes", text)
        self.assertIn("app", text)

    def test_progress_bar_only_on_a_terminal_for_large_inputs_and_never_with_no_progress(self):
        d = self.dir("progress")
        big, small = os.path.join(d, "big.bin"), os.path.join(d, "small.bin")
        write(big, os.urandom(9 << 20))
        write(small, os.urandom(1 << 20))

        def stderr_on_a_pty(*args):
            master, slave = pty.openpty()
            p = subprocess.Popen([KMSCTL, *args], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=slave, env=self.vault.base_env(),
                                 cwd=self.vault.root)
            os.close(slave)
            chunks = []
            while True:
                try:
                    c = os.read(master, 65536)
                except OSError:
                    break
                if not c:
                    break
                chunks.append(c)
            p.wait(timeout=120)
            p.stdout.close()
            os.close(master)
            self.assertEqual(p.returncode, 0)
            return b"".join(chunks).decode("utf-8", "replace")

        err = stderr_on_a_pty("file", "encrypt", "--key", self.key, big)
        self.assertIn("MiB", err)
        self.assertIn("%", err)
        self.assertIn("/s", err)
        self.assertEqual(stderr_on_a_pty("file", "encrypt", "--key", self.key, "--force",
                                         "--no-progress", big), "")
        self.assertEqual(stderr_on_a_pty("file", "encrypt", "--key", self.key, small), "")


if __name__ == "__main__":
    kmsenv.main()
