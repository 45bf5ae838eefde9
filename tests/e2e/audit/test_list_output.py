"""`kmsctl audit list --output table|wide|json|jsonl` as a user reads it: one JSON object with the
records and the cursor of the next page (`--before`), JSON Lines, tables whose columns stay
aligned whatever a resource holds, and file operations recorded by absolute path."""

import ctypes
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import AUDIT_FIELDS, KmsTestCase

HINT = re.compile(r"^more records: kmsctl audit list --before (\d+)( \(with the same filters\))?$",
                  re.M)
TABLE = ("SEQ", "TIME", "PRINCIPAL", "ACTION", "RESOURCE", "OUTCOME")
WIDE = ("SEQ", "TIME", "PRINCIPAL", "UID", "HOST", "VIA", "CLIENT PID", "ACTION", "OUTCOME",
        "ERROR", "RESOURCE")
RIGHT = {"SEQ", "UID", "CLIENT PID"}  # numbers, aligned to the right


def compact(record):
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class ListTestCase(KmsTestCase):
    def columns(self, out, titles):
        """The table printed in `out` as a list of {title: cell}, checking that on every row each
        column starts (a number: ends) where its title does in the header, two spaces after the
        column before."""
        lines = out.splitlines()
        header = lines[0]
        starts = []
        for t in titles:
            starts.append(header.index(t, starts[-1] + 1 if starts else 0))
        self.assertEqual(header.split()[0], titles[0], header)
        rows = []
        for line in lines[1:]:
            begin = []
            for i, t in enumerate(titles):
                if t in RIGHT:
                    end = starts[i] + len(t)
                    self.assertNotIn(line[end - 1:end], ("", " "), f"{t} ends elsewhere:\n{out}")
                    begin.append(end - len(line[:end].split(" ")[-1]))
                else:
                    self.assertNotIn(line[starts[i]:starts[i] + 1], ("", " "),
                                     f"{t} starts elsewhere:\n{out}")
                    begin.append(starts[i])
            cells = {}
            for i, t in enumerate(titles):
                last = i + 1 == len(titles)
                end = starts[i] + len(t) if t in RIGHT else len(line) if last else begin[i + 1] - 2
                if not last:
                    self.assertEqual(line[begin[i + 1] - 2:begin[i + 1]], "  ",
                                     f"no gap before {titles[i + 1]}:\n{out}")
                cells[t] = line[begin[i]:end].rstrip()
            rows.append(cells)
        return rows

    def key(self):
        self.kms.ok("key", "create", "--alias", "alias/files")
        return "alias/files"


class JsonShapes(ListTestCase):
    def setUp(self):
        super().setUp()
        self.populate(4)  # records 1 to 5

    def test_json_is_one_object_of_items_and_next(self):
        for flag in (("--json",), ("--output", "json")):
            with self.subTest(flag=flag):
                got = self.kms.json("audit", "list", *flag, "--before", "6")
                self.assertEqual(sorted(got), ["items", "next"])
                self.assertIsNone(got["next"], "the whole log fits in the default limit")
                self.assertEqual([x["seq"] for x in got["items"]], [5, 4, 3, 2, 1])
                log = self.kms.records()
                self.assertEqual(got["items"], list(reversed(log[:5])))
                for rec in got["items"]:
                    self.assertEqual(set(rec) - {"state"}, set(AUDIT_FIELDS))

    def test_jsonl_is_one_compact_record_a_line_and_nothing_else(self):
        r = self.kms.ok("audit", "list", "--output", "jsonl", "--before", "6")
        self.assertTrue(r.out.endswith("\n"))
        lines = r.out.split("\n")[:-1]
        records = [json.loads(l) for l in lines]
        self.assertEqual([x["seq"] for x in records], [5, 4, 3, 2, 1])
        self.assertEqual(lines, [compact(x) for x in records])
        self.assertEqual(records, list(reversed(self.kms.records()[:5])))
        self.assertEqual(r.err, "")

    def test_json_and_another_output_or_an_unknown_one_are_usage_errors(self):
        n = self.kms.audit_count()
        for args in (("--json", "--output", "table"), ("--output", "xml"), ("--output",),
                     ("--before", "0"), ("--before", "x")):
            with self.subTest(args=args):
                self.assertError(self.kms.run("audit", "list", *args), 2)
        self.assertEqual(self.kms.audit_count(), n, "refused before the vault was opened")

    def test_help_shows_the_output_formats_and_the_cursor(self):
        r = self.kms.ok("audit", "list", "--help")
        for word in ("--output", "table", "wide", "jsonl", "--before", "--json"):
            self.assertIn(word, r.out)


class Paging(ListTestCase):
    def setUp(self):
        super().setUp()
        self.populate(9)  # records 1 to 10

    def test_next_pages_through_the_whole_log_without_gaps_or_repeats(self):
        seen, before, pages = [], ["--before", "11"], 0
        while True:
            page = self.kms.json("audit", "list", "--json", "--limit", "3", *before)
            pages += 1
            seen += [x["seq"] for x in page["items"]]
            if page["next"] is None:
                break
            self.assertEqual(page["next"], page["items"][-1]["seq"])
            before = ["--before", str(page["next"])]
        self.assertEqual(seen, list(range(10, 0, -1)))
        self.assertEqual(pages, 4)  # 3 + 3 + 3 + 1

    def test_next_is_null_when_the_limit_is_exactly_what_is_left(self):
        page = self.kms.json("audit", "list", "--json", "--limit", "3", "--before", "4")
        self.assertEqual(([x["seq"] for x in page["items"]], page["next"]), ([3, 2, 1], None))
        page = self.kms.json("audit", "list", "--json", "--limit", "3", "--before", "5")
        self.assertEqual(([x["seq"] for x in page["items"]], page["next"]), ([4, 3, 2], 2))

    def test_before_applies_with_the_filters_and_is_recorded(self):
        page = self.kms.json("audit", "list", "--json", "--action", "vault.status", "--limit",
                             "2", "--before", "6")
        self.assertEqual(([x["seq"] for x in page["items"]], page["next"]), ([5, 4], 4))
        rec = self.kms.records()[-1]
        self.assertEqual(rec["action"], "audit.list")
        # One record more than it shows is asked for: whether the limit cut the listing.
        self.assertEqual(rec["params"], {"action": "vault.status", "before_seq": 6, "limit": 3,
                                         "host": kmsenv.HOST})

    def test_text_modes_hint_at_the_next_page_on_stderr(self):
        for mode in ("table", "wide", "jsonl"):
            with self.subTest(mode=mode):
                r = self.kms.ok("audit", "list", "--output", mode, "--limit", "2", "--before", "8")
                m = HINT.search(r.err)
                self.assertIsNotNone(m, r.show())
                self.assertEqual((m.group(1), m.group(2)), ("6", None))
                self.assertNotIn("more records", r.out)
                r = self.kms.ok("audit", "list", "--output", mode, "--limit", "2", "--before", "3")
                self.assertEqual(r.err, "", "records 2 and 1 are the end of the log")
        r = self.kms.ok("audit", "list", "--action", "vault.status", "--limit", "1")
        m = HINT.search(r.err)
        self.assertIsNotNone(m, r.show())
        self.assertIsNotNone(m.group(2), "the same filters are needed for the next page")
        self.assertEqual(self.kms.ok("-q", "audit", "list", "--limit", "1").err, "")
        r = self.kms.ok("audit", "list", "--json", "--limit", "1")
        self.assertEqual(r.err, "", "JSON carries the cursor itself")
        self.assertIsNotNone(r.json()["next"])

    def test_the_table_pages_like_json(self):
        r = self.kms.ok("audit", "list", "--limit", "4", "--before", "9")
        rows = self.columns(r.out, TABLE)
        self.assertEqual([row["SEQ"] for row in rows], ["8", "7", "6", "5"])


class Tables(ListTestCase):
    def test_columns_stay_aligned_with_a_long_resource_and_the_table_shortens_it(self):
        self.kms.init()
        key = self.key()
        d = self.kms.path("a-directory-with-a-rather-long-name", "and-another-one-below-it")
        os.makedirs(d)
        long_name = os.path.join(d, "quarterly-report-final-v2.txt")
        short = self.kms.path("s.txt")
        for p in (long_name, short):
            with open(p, "w") as f:
                f.write("data\n")
        self.kms.ok("file", "encrypt", "--key", key, long_name)
        self.kms.ok("file", "encrypt", "--key", key, short)
        r = self.kms.ok("audit", "list")
        rows = self.columns(r.out, TABLE)
        log = list(reversed(self.kms.records()[:-1]))
        self.assertEqual([row["SEQ"] for row in rows], [str(x["seq"]) for x in log])
        self.assertEqual([row["ACTION"] for row in rows], [x["action"] for x in log])
        self.assertEqual([row["OUTCOME"] for row in rows], [x["outcome"] for x in log])
        shown = [row["RESOURCE"] for row in rows if row["ACTION"] == "file.encrypt"]
        self.assertEqual(len(shown), 4, r.out)
        # The long one is cut in the middle: its kind and its file name stay.
        self.assertEqual(len(shown[3]), 48, shown)
        self.assertTrue(shown[3].startswith("file/"), shown)
        self.assertIn("\u2026", shown[3])
        self.assertTrue(shown[3].endswith("/quarterly-report-final-v2.txt"), shown)
        if len("file/" + short) <= 48:
            self.assertEqual(shown[0], "file/" + short)

        r = self.kms.ok("audit", "list", "--output", "wide")
        rows = self.columns(r.out, WIDE)
        log = list(reversed(self.kms.records()[:-1]))
        self.assertEqual([row["SEQ"] for row in rows], [str(x["seq"]) for x in log])
        self.assertEqual([row["RESOURCE"] for row in rows], [x["resource"] for x in log])
        self.assertIn("file/" + long_name, [row["RESOURCE"] for row in rows])

    def test_wide_shows_the_uid_the_host_the_channel_and_the_error_code(self):
        self.populate(2)
        (action,) = self.kms.sql("SELECT action FROM audit_log WHERE seq = 2")[0]
        self.kms.sql("UPDATE audit_log SET action = 'key.delete' WHERE seq = 2")
        self.assertEqual(self.kms.run("audit", "verify").rc, 5)
        self.kms.sql("UPDATE audit_log SET action = ? WHERE seq = 2", (action,))
        r = self.kms.ok("audit", "list", "--output", "wide")
        rows = self.columns(r.out, WIDE)
        log = list(reversed(self.kms.records()[:-1]))
        self.assertEqual(len(rows), len(log))
        for row, rec in zip(rows, log):
            self.assertEqual(row["UID"], str(os.getuid()))
            self.assertEqual(row["HOST"], kmsenv.HOST)
            self.assertEqual(rec["params"]["host"], kmsenv.HOST)
            self.assertEqual((row["VIA"], row["CLIENT PID"]), ("direct", "-"))
            self.assertEqual(row["PRINCIPAL"], rec["principal"])
            self.assertEqual(row["ERROR"], rec["error_code"] or "-")
        failed = [row for row in rows if row["OUTCOME"] == "error"]
        self.assertEqual([(row["ACTION"], row["ERROR"]) for row in failed],
                         [("audit.verify", "integrity")])

    def test_each_record_names_the_host_whose_kmsctl_wrote_it(self):
        """Two hosts sharing a vault, as a UTS namespace makes one: the machine's name is
        recorded as that kmsctl saw it, and wide shows each record's own."""
        self.kms.init()
        libc = ctypes.CDLL(None, use_errno=True)

        def on_other_host():
            name = b"build-runner-07"
            if libc.unshare(0x04000000) != 0 or libc.sethostname(name, len(name)) != 0:  # NEWUTS
                os._exit(97)

        r = self.kms.run("key", "create", "--alias", "alias/remote", preexec_fn=on_other_host)
        if r.rc == 97:
            self.skipTest("no UTS namespace here (needs root, or unshare is refused)")
        self.assertEqual(r.rc, 0, r.err)
        self.kms.ok("key", "describe", "alias/remote")
        rows = self.columns(self.kms.ok("audit", "list", "--output", "wide").out, WIDE)
        hosts = {row["ACTION"]: row["HOST"] for row in rows}
        self.assertEqual(hosts["key.create"], "build-runner-07")
        self.assertEqual(hosts["key.describe"], kmsenv.HOST)
        created = [x for x in self.kms.records() if x["action"] == "key.create"]
        self.assertEqual(created[0]["params"]["host"], "build-runner-07")
        self.kms.ok("audit", "verify")

    def test_control_characters_in_a_file_name_are_escaped_in_every_text_mode(self):
        self.kms.init()
        key = self.key()
        name = self.kms.path("x\x1b[2J\n  99  forged\trow.txt")
        with open(name, "w") as f:
            f.write("data\n")
        self.kms.ok("file", "encrypt", "--key", key, name)
        shown = "x\\x1b[2J\\n  99  forged\\trow.txt"
        for mode in ("table", "wide"):
            with self.subTest(mode=mode):
                r = self.kms.ok("audit", "list", "--output", mode)
                self.assertNotIn("\x1b", r.out)
                self.assertNotIn("\t", r.out)
                rows = self.columns(r.out, TABLE if mode == "table" else WIDE)
                # One row a record: all but this listing's own (the last records() lists).
                self.assertEqual(len(rows), len(self.kms.records()) - 1)
                enc = [row["RESOURCE"] for row in rows if row["ACTION"] == "file.encrypt"]
                self.assertEqual(len(enc), 2, r.out)
                for cell in enc:
                    self.assertTrue(cell.endswith("/" + shown), cell)
        # JSON keeps the name as it is.
        enc = [x for x in self.kms.records() if x["action"] == "file.encrypt"]
        self.assertEqual([x["resource"] for x in enc], ["file/" + name] * 2)


class AbsolutePaths(ListTestCase):
    def setUp(self):
        super().setUp()
        self.kms.init()
        self.keyref = self.key()
        self.sub = self.kms.path("sub")
        os.makedirs(os.path.join(self.sub, "dir"))
        with open(os.path.join(self.sub, "dir", "a.txt"), "w") as f:
            f.write("plain\n")
        # The current directory as the kernel reports it (a test's TMPDIR may hold a symlink).
        self.file = os.path.join(os.path.realpath(self.sub), "dir", "a.txt")

    def files(self, after):
        return [(x["action"], x["resource"], x["params"]["file"]) for x in self.kms.records()
                if x["seq"] > after and x["action"].startswith("file.")]

    def head(self):
        return self.kms.sql("SELECT max(seq) FROM audit_log")[0][0]

    def test_a_relative_path_is_recorded_absolute_for_encrypt_decrypt_and_rewrap(self):
        cwd = self.sub
        seq = self.head()
        self.kms.ok("file", "encrypt", "--key", self.keyref, "dir/a.txt", cwd=cwd)
        self.kms.ok("file", "decrypt", "-o", "out.txt", "./dir//a.txt.kenc", cwd=cwd)
        self.kms.ok("file", "rewrap", "dir/./a.txt.kenc", cwd=cwd)
        enc = "file/" + self.file
        dec = enc + ".kenc"
        self.assertEqual(self.files(seq), [("file.encrypt", enc, self.file)] * 2 +
                         [("file.decrypt", dec, self.file + ".kenc")] * 2 +
                         [("file.rewrap", dec, self.file + ".kenc")] * 2)
        # Standard input stays "-".
        seq = self.head()
        r = self.kms.run("file", "encrypt", "--key", self.keyref, "-o", "stdin.kenc", "-",
                         input=b"piped", cwd=cwd)
        self.assertOk(r)
        self.assertEqual(self.files(seq), [("file.encrypt", "file/-", "-")] * 2)

    def test_dot_dot_goes_through_the_real_directory_and_a_symlinked_file_keeps_its_name(self):
        # link/.. is the parent of the directory the link points to, not the directory the link
        # is in: the record names the file the kernel opened.
        os.symlink(os.path.join(self.sub, "dir"), self.kms.path("link"))
        os.symlink("dir/a.txt", os.path.join(self.sub, "alias.txt"))
        seq = self.head()
        self.kms.ok("file", "encrypt", "--key", self.keyref, "-o", "one.kenc", "link/../dir/a.txt")
        self.kms.ok("file", "encrypt", "--key", self.keyref, "-o", "two.kenc", "../alias.txt",
                    cwd=os.path.join(self.sub, "dir"))
        real = os.path.join(os.path.realpath(self.sub), "dir", "a.txt")
        self.assertEqual([r for (_, r, _) in self.files(seq)],
                         ["file/" + real] * 2 + ["file/" + os.path.join(
                             os.path.realpath(self.sub), "alias.txt")] * 2)


@kmsenv.file_store_only("an agent serves a vault file")
class ThroughAnAgent(ListTestCase, kmsenv.AgentTestCase):
    def test_the_agent_records_the_callers_absolute_path_and_wide_shows_the_channel(self):
        self.kms.init()
        key = self.key()
        sub = self.kms.path("work", "sub")
        os.makedirs(sub)
        with open(os.path.join(sub, "b.txt"), "w") as f:
            f.write("agent\n")
        info = self.kms.json("agent", "start", "--json")
        self.agent_pid = info["pid"]
        env = {"KMSCTL_AGENT_SOCK": info["socket"]}
        seq = self.kms.sql("SELECT max(seq) FROM audit_log")[0][0]
        r = self.kms.run("file", "encrypt", "--key", key, "b.txt", env=env, cwd=sub,
                         unset=("KMSCTL_PIN_FILE",))
        self.assertOk(r)
        recs = [x for x in self.kms.records() if x["seq"] > seq and x["action"] == "file.encrypt"]
        self.assertEqual(len(recs), 2, recs)
        for rec in recs:
            self.assertEqual(rec["params"]["channel"], "agent")
            self.assertEqual(rec["resource"], "file/" + os.path.join(os.path.realpath(sub), "b.txt"))
        r = self.kms.ok("audit", "list", "--output", "wide")
        rows = self.columns(r.out, WIDE)
        enc = [row for row in rows if row["ACTION"] == "file.encrypt"]
        self.assertEqual([row["VIA"] for row in enc], [f"agent {info['pid']}"] * 2)
        client = str(recs[0]["params"]["agent"]["client_pid"])
        self.assertEqual([row["CLIENT PID"] for row in enc], [client] * 2)
        self.assertEqual([row["RESOURCE"] for row in enc], [recs[0]["resource"]] * 2)


if __name__ == "__main__":
    kmsenv.main()
