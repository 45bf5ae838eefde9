#!/usr/bin/env bash
# Benchmarks (not tests): prints, for this machine and in one run,
#   1. the wall time of `kmsctl status` (token unseal + one audited transaction) next to the bare
#      PKCS#11 floor on the same token (bench/token_op.cpp: load module, login, one AES-GCM op),
#      and their ratio (target: kmsctl <= 1.5x the bare op);
#      Also `kmsctl encrypt` of 1 KiB and `kmsctl decrypt` of its output (software key), next to
#      the same bare op (target: each <= 1.5x);
#   2. `kmsctl audit verify` throughput on a vault with 1,000,000 audit records
#      (target: >= 500,000 records/s) and its peak RSS (constant memory: compared with a tiny log).
# docs/PERFORMANCE.md records the figures, the commands and the machine.
#
# Environment:
#   BENCH_RUNS=60          timed runs per command (after BENCH_WARMUP=3 warm-up runs)
#   BENCH_RECORDS=1000000  audit records in the verify benchmark
#   BENCH_VERIFY_RUNS=3    timed runs of `audit verify` (the median is reported)
#   BENCH_TIMER=python|hyperfine   default: python, a python3 loop that runs the commands
#                          interleaved, so that each of them sees the same machine: on a shared VM
#                          the speed drifts by 10-30 % within a minute, and hyperfine's one block
#                          per command lets the drift land between a command and the bare op it
#                          is divided by. Both add the same cost of starting a process (0.69 ms
#                          and 0.7 ms for an empty C program on the reference machine).
#   BENCH_NICE=-10         run the timed commands under `nice -n BENCH_NICE` (needs root for < 0).
#                          Default: no nice. With sched_autogroup_enabled=1 (the Debian default)
#                          nice only ranks processes within this session, not against others' work:
#                          on a shared machine, read the CPU columns rather than the wall columns.
#   BENCH_SKIP_SETUP=1     do not call scripts/setup.sh (just build the targets in build/)
#   BENCH_KEEP=1           keep the temporary directory (its path is printed)
#   BENCH_MD=FILE          also write the result table (Markdown) to FILE
#   BENCH_SERVE=0          skip the served encrypt (`kmsctl serve` vs `kmsctl agent`)
#   BENCH_SIGN=0           skip `kmsctl sign` (EC_P256) vs the bare token op
#   BENCH_REMOTE=0         skip the token reached through `p11-kit server` vs the same token direct
#   BENCH_PG=0             skip a vault in PostgreSQL (a throwaway local cluster) vs a vault file
#   BENCH_LARGE=1          also time status / encrypt / secret get on a large vault against the
#                          empty one (off by default: the large vault takes minutes and gigabytes
#                          to make); its size: BENCH_LARGE_KEYS=100000, BENCH_LARGE_SECRETS=10000,
#                          BENCH_LARGE_RECORDS=10000000 (audit records besides theirs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD_DIR:-build}
RUNS=${BENCH_RUNS:-60}
WARMUP=${BENCH_WARMUP:-3}
RECORDS=${BENCH_RECORDS:-1000000}
VERIFY_RUNS=${BENCH_VERIFY_RUNS:-3}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
show() { printf '$ %s\n' "$*"; }  # print a command as it is run

# ---- build -------------------------------------------------------------------------------------
if [[ ${BENCH_SKIP_SETUP:-0} != 1 && -x scripts/setup.sh ]]; then
  log "scripts/setup.sh (packages + Release build)"
  BUILD_TYPE=Release scripts/setup.sh >&2
fi
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt")
[[ $build_type == Release ]] || log "warning: $BUILD is a '$build_type' build, not Release"
cmake --build "$BUILD" --target kmsctl bench_token_op bench_fill_vault >&2

BUILD_ABS=$(cd "$BUILD" && pwd)
KMSCTL=$BUILD_ABS/kmsctl
TOKEN_OP=$BUILD_ABS/bench/bench_token_op
FILL=$BUILD_ABS/bench/bench_fill_vault
for b in "$KMSCTL" "$TOKEN_OP" "$FILL"; do [[ -x $b ]] || die "missing $b"; done
command -v python3 >/dev/null || die "python3 is needed (scripts/setup.sh installs it)"
TIME=/usr/bin/time
[[ -x $TIME ]] || die "/usr/bin/time is needed for peak RSS (Debian package: time)"

timer=${BENCH_TIMER:-python}
[[ $timer != hyperfine ]] || command -v hyperfine >/dev/null || die "BENCH_TIMER=hyperfine: hyperfine is not installed"
nice_cmd=()
if [[ -n ${BENCH_NICE:-} ]]; then nice_cmd=(nice -n "$BENCH_NICE"); fi

# ---- a temporary vault with its own private token -----------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kmsctl-bench.XXXXXX")
chmod 700 "$TMP"
cleanup() {
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

umask 077
PIN_FILE=$TMP/pin
python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$PIN_FILE"
chmod 600 "$PIN_FILE"
export KMSCTL_PIN_FILE=$PIN_FILE
unset KMSCTL_PIN KMSCTL_VAULT SOFTHSM2_CONF

VAULT=$TMP/status/vault.db
mkdir -p "$TMP/status"
echo "## Setup"
show "KMSCTL_PIN_FILE=$PIN_FILE kmsctl --vault $VAULT init --so-pin-file $TMP/status/so.pin"
"$KMSCTL" --vault "$VAULT" init --so-pin-file "$TMP/status/so.pin" >/dev/null
"$KMSCTL" --vault "$VAULT" status --json >"$TMP/status.json"
read -r MODULE TOKEN_LABEL VAULT_ID < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["token"]["module"], s["token"]["label"], s["vault"]["id"])' "$TMP/status.json")
ROOT_LABEL="kmsctl-root:$VAULT_ID"
SOFTHSM_CONF=$VAULT.token/softhsm2.conf
[[ -f $SOFTHSM_CONF ]] || die "no private token configuration at $SOFTHSM_CONF"
echo "vault $VAULT (id $VAULT_ID), token \"$TOKEN_LABEL\" via $MODULE"

# Both commands run with the same environment: kmsctl reads the PIN file and sets SOFTHSM2_CONF
# itself from the vault header; bench_token_op reads KMSCTL_PIN and SOFTHSM2_CONF.
export KMSCTL_VAULT=$VAULT
export SOFTHSM2_CONF=$SOFTHSM_CONF
KMSCTL_PIN=$(head -n1 "$PIN_FILE")
export KMSCTL_PIN
CMD_STATUS="$KMSCTL status"
CMD_BARE="$TOKEN_OP $MODULE $TOKEN_LABEL $ROOT_LABEL"
# The bare op must work before it is timed.
$CMD_BARE || die "bench_token_op failed"
# encrypt / decrypt: a software key, 1 KiB of random plaintext, and one blob to decrypt.
show "kmsctl key create --alias alias/bench"
"$KMSCTL" key create --alias alias/bench >/dev/null
head -c 1024 /dev/urandom >"$TMP/plain.1k"
show "kmsctl encrypt --key alias/bench --in $TMP/plain.1k --out $TMP/blob.1k"
"$KMSCTL" encrypt --key alias/bench --in "$TMP/plain.1k" --out "$TMP/blob.1k"
"$KMSCTL" decrypt --in "$TMP/blob.1k" | cmp -s - "$TMP/plain.1k" || die "decrypt did not round-trip"
CMD_ENCRYPT="$KMSCTL encrypt --key alias/bench --in $TMP/plain.1k"
CMD_DECRYPT="$KMSCTL decrypt --in $TMP/blob.1k"

# time_interleaved OUT CMD...: WARMUP + RUNS rounds, each running every CMD once in turn (so that
# all of them see the same machine); wall time (perf_counter around Popen + wait4) and CPU time
# (wait4's rusage) of each run, in hyperfine's --export-json layout, to OUT. A CMD may start with
# NAME=VALUE words: its environment, as in the shell (no env process in between).
time_interleaved() {
  local out=$1
  shift
  "${nice_cmd[@]}" python3 - "$out" "$WARMUP" "$RUNS" "$@" <<'PY'
import json, os, shlex, subprocess, sys, time
out, warmup, runs, cmds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
argvs, envs = [], []
for c in cmds:
    words, env = shlex.split(c), dict(os.environ)
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    argvs.append(words)
    envs.append(env)
res = [{"command": c, "times": [], "user_times": [], "system_times": []} for c in cmds]
for i in range(warmup + runs):
    for a, e, r in zip(argvs, envs, res):  # interleaved: all commands see the same machine load
        t = time.perf_counter()
        p = subprocess.Popen(a, stdout=subprocess.DEVNULL, env=e)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bench: {r['command']} failed")
        if i >= warmup:
            r["times"].append(dt)
            r["user_times"].append(ru.ru_utime)
            r["system_times"].append(ru.ru_stime)
for r in res:
    r["user"] = sum(r["user_times"]) / runs
    r["system"] = sum(r["system_times"]) / runs
json.dump({"results": res}, open(out, "w"))
PY
}

# ---- 1. kmsctl status vs the bare token operation --------------------------------------------
echo
echo "## 1. kmsctl status, encrypt 1 KiB, decrypt vs bare PKCS#11 open + login + AES-GCM ($timer, $WARMUP warm-up + $RUNS runs each)"
echo "environment: KMSCTL_VAULT=$VAULT KMSCTL_PIN_FILE=$PIN_FILE SOFTHSM2_CONF=$SOFTHSM_CONF KMSCTL_PIN=<the PIN>"
STATS=$TMP/latency.json
if [[ $timer == hyperfine ]]; then
  show "${nice_cmd[*]:+${nice_cmd[*]} }hyperfine -N --warmup $WARMUP --runs $RUNS --export-json $STATS '$CMD_STATUS' '$CMD_BARE' '$CMD_ENCRYPT' '$CMD_DECRYPT'"
  "${nice_cmd[@]}" hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" \
    --export-json "$STATS" "$CMD_STATUS" "$CMD_BARE" "$CMD_ENCRYPT" "$CMD_DECRYPT" >&2
else
  show "${nice_cmd[*]:+${nice_cmd[*]} }python3 timing loop (perf_counter around Popen + wait4, the commands interleaved): '$CMD_STATUS' '$CMD_BARE' '$CMD_ENCRYPT' '$CMD_DECRYPT'"
  time_interleaved "$STATS" "$CMD_STATUS" "$CMD_BARE" "$CMD_ENCRYPT" "$CMD_DECRYPT"
fi

# new_vault NAME: a new vault $TMP/NAME/vault.db (on the private token of section 1's PIN),
# its path in NEW_VAULT.
new_vault() {
  NEW_VAULT=$TMP/$1/vault.db
  mkdir -p "$TMP/$1"
  show "kmsctl --vault $NEW_VAULT init --so-pin-file $TMP/$1/so.pin"
  "$KMSCTL" --vault "$NEW_VAULT" init --so-pin-file "$TMP/$1/so.pin" >/dev/null
}

# ---- 2. audit verify on a large log ------------------------------------------------------------
echo
echo "## 2. audit verify on $RECORDS records"
new_vault big
BIG=$NEW_VAULT
show "KMSCTL_PIN=<the PIN> $FILL $BIG $RECORDS"
fill_start=$(date +%s.%N)
"$FILL" "$BIG" "$RECORDS"
fill_end=$(date +%s.%N)

VERIFY=$TMP/verify.tsv
: >"$VERIFY"
verify_once() {  # $1 = vault, $2 = label; appends "label wall_s maxrss_kb records ok"
  local out=$TMP/verify.out err=$TMP/verify.err
  "${nice_cmd[@]}" "$TIME" -v "$KMSCTL" --vault "$1" audit verify --json >"$out" 2>"$err" ||
    { cat "$err" >&2; die "audit verify failed on $1"; }
  python3 - "$2" "$out" "$err" >>"$VERIFY" <<'PY'
import json, re, sys
label, out, err = sys.argv[1:]
rep = json.load(open(out))
text = open(err).read()
m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", text).group(1)) for k in ("User", "System"))
print(label, wall, rss, rep["records"], rep["ok"], cpu, sep="\t")
PY
}
show "${nice_cmd[*]:+${nice_cmd[*]} }/usr/bin/time -v kmsctl --vault $BIG audit verify --json   # x$VERIFY_RUNS"
for ((i = 0; i < VERIFY_RUNS; i++)); do verify_once "$BIG" big; done
show "${nice_cmd[*]:+${nice_cmd[*]} }/usr/bin/time -v kmsctl --vault $VAULT audit verify --json   # tiny log, for the RSS baseline"
verify_once "$VAULT" small

# ---- the table ---------------------------------------------------------------------------------
echo
echo "## Results"
python3 - "$STATS" "$VERIFY" "$fill_start" "$fill_end" "$RECORDS" "$timer" "${BENCH_MD:-}" <<'PY'
import json, os, statistics, subprocess, sys
stats, verify, f0, f1, n, timer, md_out = sys.argv[1:]
res = json.load(open(stats))["results"]

def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

rows = []
for r in res:
    t = [x * 1e3 for x in r["times"]]
    rows.append({"median": statistics.median(t), "p90": pct(t, 0.9), "min": min(t),
                 "cpu": (r["user"] + r["system"]) * 1e3})
st, bare, enc, dec = rows
ratio = st["median"] / bare["median"]
cpu_ratio = st["cpu"] / bare["cpu"]

vr = [l.split("\t") for l in open(verify).read().splitlines()]
big = [v for v in vr if v[0] == "big"]
small = [v for v in vr if v[0] == "small"][0]
walls = [float(v[1]) for v in big]
wall = statistics.median(walls)
records = int(big[0][3])
rate = records / wall
rss_big = max(int(v[2]) for v in big)
cpus = [float(v[5]) for v in big]
cpu = statistics.median(cpus)
rss_small = int(small[2])
ok = all(v[4] == "True" for v in big)
fill_s = float(f1) - float(f0)

cpu_model = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
load = open("/proc/loadavg").read().split()[:3]
mach = (f"machine: {os.cpu_count()} CPUs (nproc {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}), "
        f"{cpu_model}; load average {' '.join(load)}")

def mark(ok):
    return "yes" if ok else "**no**"

lines = [
    mach,
    "",
    "| measure | median | p90 | min | CPU (user+sys, mean) |",
    "|---|---:|---:|---:|---:|",
    f"| `kmsctl status` | {st['median']:.1f} ms | {st['p90']:.1f} ms | {st['min']:.1f} ms | {st['cpu']:.1f} ms |",
    f"| bare PKCS#11 open + login + AES-GCM (`bench_token_op`) | {bare['median']:.1f} ms | {bare['p90']:.1f} ms | {bare['min']:.1f} ms | {bare['cpu']:.1f} ms |",
    f"| ratio status / bare (target <= 1.5x) | **{ratio:.2f}x** (met: {mark(ratio <= 1.5)}) | {st['p90'] / bare['p90']:.2f}x | {st['min'] / bare['min']:.2f}x | {cpu_ratio:.2f}x |",
    f"| `kmsctl encrypt` of 1 KiB (software key) | {enc['median']:.1f} ms | {enc['p90']:.1f} ms | {enc['min']:.1f} ms | {enc['cpu']:.1f} ms |",
    f"| ratio encrypt / bare (target <= 1.5x) | **{enc['median'] / bare['median']:.2f}x** (met: {mark(enc['median'] / bare['median'] <= 1.5)}) | {enc['p90'] / bare['p90']:.2f}x | {enc['min'] / bare['min']:.2f}x | {enc['cpu'] / bare['cpu']:.2f}x |",
    f"| `kmsctl decrypt` of that blob | {dec['median']:.1f} ms | {dec['p90']:.1f} ms | {dec['min']:.1f} ms | {dec['cpu']:.1f} ms |",
    f"| ratio decrypt / bare (target <= 1.5x) | **{dec['median'] / bare['median']:.2f}x** (met: {mark(dec['median'] / bare['median'] <= 1.5)}) | {dec['p90'] / bare['p90']:.2f}x | {dec['min'] / bare['min']:.2f}x | {dec['cpu'] / bare['cpu']:.2f}x |",
    "",
    "| measure | value |",
    "|---|---:|",
    f"| `audit verify` on {records:,} records: wall (median of {len(walls)}) | {wall:.2f} s (all: {', '.join(f'{w:.2f}' for w in walls)}) |",
    f"| `audit verify` throughput (target >= 500,000/s) | **{rate:,.0f} records/s** (met: {mark(rate >= 500000)}) |",
    f"| `audit verify` CPU time (user+sys, median) and records per CPU-second | {cpu:.2f} s, {records / cpu:,.0f} records/s |",
    f"| `audit verify` on {int(small[3]):,} records (fixed cost: unseal, anchor, audited record) | {float(small[1]) * 1e3:.0f} ms |",
    f"| `audit verify` marginal throughput (fixed cost subtracted) | {(records - int(small[3])) / max(wall - float(small[1]), 1e-9):,.0f} records/s |",
    f"| `audit verify` peak RSS, {records:,} records | {rss_big / 1024:.1f} MiB |",
    f"| `audit verify` peak RSS, {int(small[3]):,} records (baseline) | {rss_small / 1024:.1f} MiB |",
    f"| chain verified | {'ok' if ok else 'FAILED'} |",
    f"| filling {int(n):,} records with bench_fill_vault (setup, not a target) | {fill_s:.1f} s |",
    "",
    f"timer: {timer}; wall times include process start and exit.",
]
print("\n".join(lines))
if md_out:
    with open(md_out, "w") as f:
        f.write("\n".join(lines) + "\n")
PY

# ---- 3. file envelope: kmsctl file encrypt/decrypt vs age, gpg, openssl ---------------------------
# 1 GiB of random data, output to /dev/null, median of BENCH_FILE_RUNS (5) runs of each command,
# the commands interleaved so that all see the same machine load; then peak RSS of kmsctl on a
# 1 GiB and a 4 GiB input (constant memory). `file encrypt --recipient` (an X25519 public key, no
# vault) runs beside `age -r`, the same kind of operation. Targets: file encrypt and file decrypt each <= 0.5x
# the time of age and <= 1.5x `openssl enc -aes-256-ctr`; peak RSS <= 32 MiB, the same for 4 GiB.
#   BENCH_FILE_RUNS=5     timed runs per command
#   BENCH_FILE_MIB=1024   size of the test file in MiB
#   BENCH_FILE_MD=FILE    also write the result table (Markdown) to FILE
echo
FILE_RUNS=${BENCH_FILE_RUNS:-5}
FILE_MIB=${BENCH_FILE_MIB:-1024}
echo "## 3. file envelope on $FILE_MIB MiB: kmsctl vs age, gpg, openssl ($FILE_RUNS runs each, median)"
echo "uptime at the start: $(uptime)"
for tool in age age-keygen gpg openssl; do
  command -v "$tool" >/dev/null || die "$tool is needed for section 3 (scripts/setup.sh installs it)"
done
FDIR=$TMP/files
mkdir -p "$FDIR/gnupg"
chmod 700 "$FDIR/gnupg"
FVAULT=$FDIR/vault.db
show "kmsctl --vault $FVAULT init --so-pin-file $FDIR/so.pin; kmsctl --vault $FVAULT key create --alias alias/bench"
"$KMSCTL" --vault "$FVAULT" init --so-pin-file "$FDIR/so.pin" >/dev/null
"$KMSCTL" --vault "$FVAULT" key create --alias alias/bench >/dev/null
show "kmsctl --vault $FVAULT key create --spec X25519 --alias alias/bench-x25519; kmsctl key public alias/bench-x25519 -o $FDIR/x25519.pem"
"$KMSCTL" --vault "$FVAULT" key create --spec X25519 --alias alias/bench-x25519 >/dev/null
"$KMSCTL" --vault "$FVAULT" key public alias/bench-x25519 -o "$FDIR/x25519.pem"
show "head -c ${FILE_MIB}MiB /dev/urandom > $FDIR/in.bin"
head -c "$((FILE_MIB << 20))" /dev/urandom >"$FDIR/in.bin"
age-keygen -o "$FDIR/age.key" 2>/dev/null
AGE_RECIPIENT=$(age-keygen -y "$FDIR/age.key")
python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$FDIR/gpg.pass"
OSSL_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
OSSL_IV=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# The ciphertexts that the decryption runs read (made once, untimed).
"$KMSCTL" --vault "$FVAULT" file encrypt --key alias/bench -o "$FDIR/in.bin.kenc" "$FDIR/in.bin"
age -r "$AGE_RECIPIENT" -o "$FDIR/in.bin.age" "$FDIR/in.bin"
GNUPGHOME=$FDIR/gnupg gpg --batch --yes --quiet --pinentry-mode loopback --passphrase-fd 3 \
  --symmetric --compress-algo none --cipher-algo AES256 -o "$FDIR/in.bin.gpg" "$FDIR/in.bin" 3<"$FDIR/gpg.pass"
openssl enc -aes-256-ctr -K "$OSSL_KEY" -iv "$OSSL_IV" -in "$FDIR/in.bin" -out "$FDIR/in.bin.ctr"
: >"$FDIR/empty.bin"
echo "commands (stdout to /dev/null; the gpg passphrase on fd 3 from $FDIR/gpg.pass; KMSCTL_PIN=<the PIN>):"
FILE_STATS=$TMP/files.json
GNUPGHOME=$FDIR/gnupg FVAULT=$FVAULT FDIR=$FDIR AGE_RECIPIENT=$AGE_RECIPIENT OSSL_KEY=$OSSL_KEY OSSL_IV=$OSSL_IV \
python3 - "$KMSCTL" "$FILE_RUNS" "$FILE_STATS" <<'PY'
import json, os, statistics, subprocess, sys, time
kmsctl, runs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
e = os.environ
d, v = e["FDIR"], e["FVAULT"]
gpg = ["gpg", "--batch", "--yes", "--quiet", "--pinentry-mode", "loopback", "--passphrase-fd", "3"]
cmds = [  # (label, argv, stdin file or None, needs the gpg passphrase on fd 3)
    ("kmsctl file encrypt", [kmsctl, "--vault", v, "file", "encrypt", "--key", "alias/bench", "-o", "-", f"{d}/in.bin"], None, False),
    ("kmsctl file encrypt --recipient X25519 (no vault)", [kmsctl, "file", "encrypt", "--recipient", f"{d}/x25519.pem", "-o", "-", f"{d}/in.bin"], None, False),
    ("age -r X25519 (encrypt)", ["age", "-r", e["AGE_RECIPIENT"], f"{d}/in.bin"], None, False),
    ("gpg --symmetric AES256 (encrypt)", gpg + ["--symmetric", "--compress-algo", "none", "--cipher-algo", "AES256", "-o", "-", f"{d}/in.bin"], None, True),
    ("openssl enc -aes-256-ctr (encrypt)", ["openssl", "enc", "-aes-256-ctr", "-K", e["OSSL_KEY"], "-iv", e["OSSL_IV"], "-in", f"{d}/in.bin"], None, False),
    ("kmsctl file decrypt", [kmsctl, "--vault", v, "file", "decrypt", "-o", "-", f"{d}/in.bin.kenc"], None, False),
    ("age -d (decrypt)", ["age", "-d", "-i", f"{d}/age.key", f"{d}/in.bin.age"], None, False),
    ("gpg -d (decrypt)", gpg + ["-d", f"{d}/in.bin.gpg"], None, True),
    ("openssl enc -d -aes-256-ctr (decrypt)", ["openssl", "enc", "-d", "-aes-256-ctr", "-K", e["OSSL_KEY"], "-iv", e["OSSL_IV"], "-in", f"{d}/in.bin.ctr"], None, False),
    ("kmsctl file encrypt, empty file (fixed cost: unseal + audit)", [kmsctl, "--vault", v, "file", "encrypt", "--key", "alias/bench", "-o", "-", f"{d}/empty.bin"], None, False),
]
for label, argv, _, fd3 in cmds:
    print(f"$ {' '.join(argv)} > /dev/null" + (f" 3< {d}/gpg.pass" if fd3 else ""))
sys.stdout.flush()

def once(argv, fd3):
    passf = open(f"{d}/gpg.pass", "rb") if fd3 else None
    kw = {}
    if passf:  # the passphrase on a file descriptor of its own (fd 3 in the commands shown)
        argv = [str(passf.fileno()) if a == "3" else a for a in argv]
        kw["pass_fds"] = (passf.fileno(),)
    t = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    if passf:
        passf.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {' '.join(argv)} failed")
    return dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss

res = {label: {"wall": [], "cpu": [], "rss": []} for label, *_ in cmds}
once(cmds[0][1], False)  # warm-up: page cache, token
for i in range(runs):
    for label, argv, _, fd3 in cmds:
        w, c, r = once(argv, fd3)
        res[label]["wall"].append(w)
        res[label]["cpu"].append(c)
        res[label]["rss"].append(r)
json.dump(res, open(out, "w"))
PY

# Peak RSS on 1 GiB and 4 GiB (the 4 GiB input is a sparse file: content does not matter for
# memory; decryption reads the envelope from a pipe, so nothing of 4 GiB lands on disk).
RSS=$TMP/files-rss.tsv
: >"$RSS"
rss_of() {  # $1 = label; the rest: a shell command; appends "label maxrss_kb"
  local label=$1
  shift
  "$TIME" -f '%M' -o "$TMP/rss.out" bash -c "$*" >/dev/null
  printf '%s\t%s\n' "$label" "$(tail -n1 "$TMP/rss.out")" >>"$RSS"
}
truncate -s 4G "$FDIR/sparse-4g.bin"
show "/usr/bin/time -f %M kmsctl file encrypt --key alias/bench -o - FILE > /dev/null   # FILE: 1 GiB, then 4 GiB"
rss_of enc1 "exec '$KMSCTL' --vault '$FVAULT' file encrypt --key alias/bench -o - '$FDIR/in.bin'"
rss_of enc4 "exec '$KMSCTL' --vault '$FVAULT' file encrypt --key alias/bench -o - '$FDIR/sparse-4g.bin'"
show "/usr/bin/time -f %M kmsctl file decrypt -o - FILE.kenc > /dev/null   # 1 GiB; 4 GiB from a pipe"
rss_of dec1 "exec '$KMSCTL' --vault '$FVAULT' file decrypt -o - '$FDIR/in.bin.kenc'"
"$KMSCTL" --vault "$FVAULT" file encrypt --key alias/bench -o - "$FDIR/sparse-4g.bin" |
  "$TIME" -f '%M' -o "$TMP/rss.out" "$KMSCTL" --vault "$FVAULT" file decrypt -o - - >/dev/null
printf '%s\t%s\n' dec4 "$(tail -n1 "$TMP/rss.out")" >>"$RSS"
rm -f "$FDIR"/in.bin* "$FDIR/sparse-4g.bin"

show "openssl speed -evp aes-256-gcm -bytes 16384 -seconds 3 -mr   # AES-256-GCM's own cost, one core"
GCM_RATE=$(openssl speed -evp aes-256-gcm -bytes 16384 -seconds 3 -mr 2>/dev/null | awk -F: '/^\+F:/ {print $4}')

echo
echo "## Results (file envelope)"
echo "uptime at the end: $(uptime)"
python3 - "$FILE_STATS" "$RSS" "$FILE_MIB" "${BENCH_FILE_MD:-}" "${GCM_RATE:-}" <<'PY'
import json, os, statistics, sys
stats, rss_file, mib, md_out, gcm_rate = sys.argv[1:]
res = json.load(open(stats))
rss = dict(l.split("\t") for l in open(rss_file).read().splitlines())
med = {k: statistics.median(v["wall"]) for k, v in res.items()}
cpu = {k: statistics.median(v["cpu"]) for k, v in res.items()}
load = open("/proc/loadavg").read().split()[:3]
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
def mark(ok): return "yes" if ok else "**no**"
lines = [f"machine: {os.cpu_count()} CPUs, {cpu_model}; load average {' '.join(load)} (at the end of the run)", "",
         f"| command ({mib} MiB, to /dev/null) | wall, median | all runs | CPU (user+sys), median | MiB/s (wall) |",
         "|---|---:|---|---:|---:|"]
for k, v in res.items():
    rate = "" if "empty" in k else f"{int(mib) / med[k]:,.0f}"
    lines.append(f"| `{k}` | {med[k]:.3f} s | {', '.join(f'{x:.2f}' for x in v['wall'])} | {cpu[k]:.2f} s | "
                 f"{rate} |")
lines.append("")
lines.append("| target | encrypt | decrypt |")
lines.append("|---|---:|---:|")
e, dd = "kmsctl file encrypt", "kmsctl file decrypt"
ae, ad = "age -r X25519 (encrypt)", "age -d (decrypt)"
oe, od = "openssl enc -aes-256-ctr (encrypt)", "openssl enc -d -aes-256-ctr (decrypt)"
re_, rd = med[e] / med[ae], med[dd] / med[ad]
lines.append(f"| kmsctl / age (target <= 0.5x) | **{re_:.2f}x** (met: {mark(re_ <= 0.5)}) | **{rd:.2f}x** (met: {mark(rd <= 0.5)}) |")
rr = med["kmsctl file encrypt --recipient X25519 (no vault)"] / med[ae]
lines.append(f"| kmsctl --recipient X25519 / age -r, both offline | **{rr:.2f}x** | |")
re_, rd = med[e] / med[oe], med[dd] / med[od]
lines.append(f"| kmsctl / openssl ctr (target <= 1.5x) | **{re_:.2f}x** (met: {mark(re_ <= 1.5)}) | **{rd:.2f}x** (met: {mark(rd <= 1.5)}) |")
ce, cd = cpu[e] / cpu[oe], cpu[dd] / cpu[od]
lines.append(f"| kmsctl / openssl ctr, CPU time (for comparison) | {ce:.2f}x | {cd:.2f}x |")
if gcm_rate:
    # CPU per GiB of the bulk work (the empty file's encrypt, the fixed cost, taken off both)
    # against AES-256-GCM's own: one core at `openssl speed`'s rate on 16 KiB blocks.
    gcm = (1 << 30) / float(gcm_rate)
    fixed = cpu["kmsctl file encrypt, empty file (fixed cost: unseal + audit)"]
    ke, kd = ((cpu[k] - fixed) * 1024 / int(mib) for k in (e, dd))
    lines.append(f"| kmsctl CPU per GiB, fixed cost subtracted / AES-256-GCM's ({gcm:.3f} s per GiB, "
                 f"`openssl speed`) (target <= 1.5x) | **{ke / gcm:.2f}x** ({ke:.3f} s, met: "
                 f"{mark(ke / gcm <= 1.5)}) | **{kd / gcm:.2f}x** ({kd:.3f} s, met: {mark(kd / gcm <= 1.5)}) |")
r = {k: int(v) / 1024 for k, v in rss.items()}
lines.append(f"| kmsctl peak RSS, {mib} MiB (target <= 32 MiB) | {r['enc1']:.1f} MiB (met: {mark(r['enc1'] <= 32)}) | {r['dec1']:.1f} MiB (met: {mark(r['dec1'] <= 32)}) |")
lines.append(f"| kmsctl peak RSS, 4 GiB (sparse input; the same as above) | {r['enc4']:.1f} MiB | {r['dec4']:.1f} MiB (from a pipe) |")
lines.append("")
lines.append("Wall times include process start, the token unseal and the audited transaction (kmsctl), and key "
             "setup (age, gpg's passphrase KDF).")
print("\n".join(lines))
if md_out:
    with open(md_out, "w") as f:
        f.write("\n".join(lines) + "\n")
PY
# ---- 4. kmsctl secret get vs pass show -------------------------------------------------
# Median wall time of reading one secret with kmsctl next to `pass show` (gpg decrypting a file
# with a throwaway, passphrase-less key in a private GNUPGHOME; gpg-agent warm), same machine,
# same run, the three commands interleaved: kmsctl on its own (token unseal, sealed record + key
# version opened, one audited transaction) and kmsctl through a `kmsctl agent` that keeps the
# vault unsealed, as gpg-agent keeps pass's key (one audited transaction), and /bin/true (the
# cost of starting any process). Targets: kmsctl <= 1/3 of pass; through the agent <= 0.08x
# pass and <= 3x /bin/true. Beside them, the client's floor: the same served command against an
# "agent" that replays a recorded reply at once (no vault, token or disk work).
# BENCH_SECRETS=0 skips this section.
if [[ ${BENCH_SECRETS:-1} != 0 ]]; then
  echo
  echo "## 4. kmsctl secret get vs pass show ($WARMUP warm-up + $RUNS runs each, interleaved)"
  command -v pass >/dev/null || die "pass is needed (Debian package: pass; scripts/setup.sh installs it)"
  SVAULT=$TMP/secrets/vault.db
  mkdir -p "$TMP/secrets"
  "$KMSCTL" --vault "$SVAULT" init --so-pin-file "$TMP/secrets/so.pin" >/dev/null
  show "kmsctl --vault $SVAULT secret create bench/db-password --generate --length 32"
  "$KMSCTL" --vault "$SVAULT" secret create bench/db-password --generate --length 32 2>/dev/null
  export GNUPGHOME=$TMP/gnupg PASSWORD_STORE_DIR=$TMP/pass-store
  mkdir -m 700 "$GNUPGHOME"
  AGENT_SOCK=$TMP/secrets/agent.sock
  stop_agents() {
    [[ -z ${REPLAY_PID:-} ]] || kill "$REPLAY_PID" 2>/dev/null || true
    gpgconf --kill gpg-agent 2>/dev/null || true
    "$KMSCTL" agent stop --socket "$AGENT_SOCK" 2>/dev/null || true
    cleanup
  }
  trap stop_agents EXIT
  show "gpg --batch --pinentry-mode loopback --passphrase '' --quick-gen-key 'kmsctl bench <bench@localhost>' default default never"
  gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-gen-key 'kmsctl bench <bench@localhost>' default default never 2>/dev/null
  FPR=$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')
  show "pass init $FPR; pass insert -m bench/db-password"
  pass init "$FPR" >/dev/null
  "$KMSCTL" --vault "$SVAULT" secret get bench/db-password | pass insert -m bench/db-password >/dev/null
  show "kmsctl --vault $SVAULT agent start --socket $AGENT_SOCK"
  "$KMSCTL" --vault "$SVAULT" agent start --socket "$AGENT_SOCK" >/dev/null
  [[ $(pass show bench/db-password) == "$("$KMSCTL" --vault "$SVAULT" secret get bench/db-password)" &&
     $(pass show bench/db-password) == "$(KMSCTL_AGENT_SOCK=$AGENT_SOCK "$KMSCTL" --vault "$SVAULT" secret get bench/db-password)" ]] ||
    die "pass and kmsctl disagree on the value"
  # The client's own floor: an "agent" that answers at once, by replaying the reply the real
  # agent gave to the first request it passed on (the same request every time here).
  REPLAY_SOCK=$TMP/secrets/replay.sock
  python3 - "$REPLAY_SOCK" "$AGENT_SOCK" <<'PY' &
import socket, sys
def frame(c):
    head = c.recv(4, socket.MSG_WAITALL)
    return head + c.recv(int.from_bytes(head, "big"), socket.MSG_WAITALL)
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
reply = None
while True:
    c, _ = s.accept()
    request = frame(c)
    if reply is None:
        a = socket.socket(socket.AF_UNIX)
        a.connect(sys.argv[2])
        a.sendall(request)
        reply = frame(a)
        a.close()
    c.sendall(reply)
    c.close()
PY
  REPLAY_PID=$!
  for _ in $(seq 50); do [[ -S $REPLAY_SOCK ]] && break; sleep 0.1; done
  [[ $(KMSCTL_AGENT_SOCK=$REPLAY_SOCK "$KMSCTL" --vault "$SVAULT" secret get bench/db-password) == "$(pass show bench/db-password)" ]] ||
    die "the replaying agent does not answer"
  SSTATS=$TMP/secret-get.json
  show "${nice_cmd[*]:+${nice_cmd[*]} }python3 timing loop: 'kmsctl --vault $SVAULT secret get bench/db-password' 'KMSCTL_AGENT_SOCK=$AGENT_SOCK kmsctl --vault $SVAULT secret get bench/db-password' 'pass show bench/db-password' /bin/true 'KMSCTL_AGENT_SOCK=$REPLAY_SOCK kmsctl --vault $SVAULT secret get bench/db-password'"
  time_interleaved "$SSTATS" "$KMSCTL --vault $SVAULT secret get bench/db-password" \
    "KMSCTL_AGENT_SOCK=$AGENT_SOCK $KMSCTL --vault $SVAULT secret get bench/db-password" \
    "pass show bench/db-password" /bin/true \
    "KMSCTL_AGENT_SOCK=$REPLAY_SOCK $KMSCTL --vault $SVAULT secret get bench/db-password"
  kill "$REPLAY_PID" 2>/dev/null || true
  "$KMSCTL" agent stop --socket "$AGENT_SOCK" 2>/dev/null
  python3 - "$SSTATS" "${BENCH_MD:-}" <<'PY'
import json, statistics, sys
res, md = json.load(open(sys.argv[1]))["results"], sys.argv[2]
def row(name, r):
    t = sorted(x * 1e3 for x in r["times"])
    p90 = t[min(len(t) - 1, int(round(0.9 * (len(t) - 1))))]
    return (statistics.median(t), p90, t[0], (r["user"] + r["system"]) * 1e3), name
rows = [row("`kmsctl secret get`", res[0]),
        row("`kmsctl secret get` through `kmsctl agent`", res[1]),
        row("`pass show` (gpg, RSA key, agent warm)", res[2]),
        row("`/bin/true`", res[3]),
        row("the same client, its agent answering at once (a replayed reply: the client's floor)", res[4])]
p = rows[2][0][0]
true = rows[3][0][0]
load = " ".join(open("/proc/loadavg").read().split()[:3])
lines = [f"load average {load}", "",
         "| command | median | p90 | min | CPU (user+sys, mean; pass: with its gpg, without gpg-agent; kmsctl: without its agent) |",
         "|---|---:|---:|---:|---:|"]
for (m, p9, mn, cpu), name in rows:
    lines.append(f"| {name} | {m:.1f} ms | {p9:.1f} ms | {mn:.1f} ms | {cpu:.1f} ms |")
for (m, *_), name in rows[:2]:
    ratio = m / p
    lines.append(f"| ratio {name} / pass (target <= 1/3) | **{ratio:.3f}** (met: {'yes' if ratio <= 1 / 3 else '**no**'}) | | | |")
served = rows[1][0][0]
lines.append(f"| ratio served / pass (target <= 0.08) | **{served / p:.3f}** (met: {'yes' if served / p <= 0.08 else '**no**'}) | | | |")
lines.append(f"| ratio served / `/bin/true` (target <= 3) | **{served / true:.2f}** (met: {'yes' if served / true <= 3 else '**no**'}) | | | |")
floor = rows[4][0][0]
lines.append(f"| the client's floor / `/bin/true` ; / pass | {floor / true:.2f} ; {floor / p:.3f} | | | |")
print("\n".join(lines))
if md:
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
PY
fi

# ---- 5. one agent, 8 clients at once ------------------------------------------------------------
# The same mixed requests (secret get, secret put, encrypt, decrypt, key describe) sent through
# one agent one after another, then by 8 clients at once, alternately BENCH_AGENT_ROUNDS times;
# the median of each. Target: throughput at once >= 1.6x one after another; `audit verify`
# passes afterwards. BENCH_AGENT=0 skips this section.
if [[ ${BENCH_AGENT:-1} != 0 ]]; then
  echo
  echo "## 5. one agent: 8 clients at once vs one after another"
  PVAULT=$TMP/parallel/vault.db
  PSOCK=$TMP/parallel/agent.sock
  mkdir -p "$TMP/parallel"
  "$KMSCTL" --vault "$PVAULT" init --so-pin-file "$TMP/parallel/so.pin" >/dev/null
  "$KMSCTL" --vault "$PVAULT" key create --alias alias/par >/dev/null
  for i in 0 1 2 3 4 5 6 7; do
    printf 'value-%s' "$i" | "$KMSCTL" --vault "$PVAULT" secret create "par/s$i" --value-file - 2>/dev/null
  done
  show "kmsctl --vault $PVAULT agent start --socket $PSOCK"
  "$KMSCTL" --vault "$PVAULT" agent start --socket "$PSOCK" >/dev/null
  show "python3: per client, 5 x (secret get, secret put, encrypt, decrypt, key describe); 8 clients one after another, then at once"
  KMSCTL_AGENT_SOCK=$PSOCK KMSCTL_VAULT=$PVAULT KMSCTL_PIN= KMSCTL_PIN_FILE= \
    python3 - "$KMSCTL" "${BENCH_AGENT_ROUNDS:-5}" "${BENCH_MD:-}" <<'PY'
import os, statistics, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
kmsctl, rounds, md = sys.argv[1], int(sys.argv[2]), sys.argv[3]
env = {k: v for k, v in os.environ.items() if k not in ("KMSCTL_PIN", "KMSCTL_PIN_FILE")}
def client(i):
    for j in range(5):
        subprocess.run([kmsctl, "secret", "get", f"par/s{i}"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([kmsctl, "secret", "put", f"par/s{i}", "--value-file", "-"], env=env,
                       check=True, input=f"v{i}.{j}".encode(), stderr=subprocess.DEVNULL)
        blob = subprocess.run([kmsctl, "encrypt", "--key", "alias/par"], env=env, check=True,
                              input=b"x" * 64, capture_output=True).stdout
        subprocess.run([kmsctl, "decrypt"], env=env, check=True, input=blob,
                       stdout=subprocess.DEVNULL)
        subprocess.run([kmsctl, "key", "describe", "alias/par"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
seq, par = [], []
for r in range(rounds):
    t = time.perf_counter()
    for i in range(8):
        client(i)
    seq.append(time.perf_counter() - t)
    t = time.perf_counter()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(client, range(8)))
    par.append(time.perf_counter() - t)
s, p = statistics.median(seq), statistics.median(par)
n = 8 * 5 * 5
load = " ".join(open("/proc/loadavg").read().split()[:3])
lines = [f"load average after {load}; {n} requests per round, {rounds} rounds each", "",
         "| clients | median wall | requests/s |", "|---|---:|---:|",
         f"| one after another | {s:.2f} s | {n / s:.0f} |",
         f"| 8 at once | {p:.2f} s | {n / p:.0f} |",
         f"| ratio (target >= 1.6) | **{s / p:.2f}** (met: {'yes' if s / p >= 1.6 else '**no**'}) | |"]
print("\n".join(lines))
if md:
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
PY
  KMSCTL_AGENT_SOCK=$PSOCK "$KMSCTL" --vault "$PVAULT" audit verify >/dev/null || die "audit verify failed after the parallel clients"
  echo "audit verify: ok"
  "$KMSCTL" agent stop --socket "$PSOCK" 2>/dev/null

  # ---- 6. a file through the agent ------------------------------------------------------------
  # `file encrypt` of BENCH_FILE_MIB MiB from /dev/shm to /dev/null, with and without an agent,
  # interleaved. Target: through the agent within 10 % of without.
  echo
  FMIB=${BENCH_FILE_MIB:-1024}
  echo "## 6. file encrypt of $FMIB MiB through an agent vs without ($WARMUP warm-up + ${BENCH_FILE_RUNS:-5} runs each)"
  SRC=$(mktemp -p /dev/shm kmsctl-bench.XXXXXX)
  # 1 GiB in memory: removed however the script ends, with the agent it starts.
  on_exit=$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT$/\1/")
  trap 'rm -f "$SRC"; "$KMSCTL" agent stop --socket "$PSOCK" 2>/dev/null || true; '"${on_exit:-cleanup}" EXIT
  head -c $((FMIB << 20)) /dev/urandom >"$SRC"
  "$KMSCTL" --vault "$PVAULT" agent start --socket "$PSOCK" >/dev/null
  FSTATS=$TMP/file-agent.json
  show "python3 timing loop: 'kmsctl --vault $PVAULT file encrypt --key alias/par --no-progress -o - $SRC' and the same with KMSCTL_AGENT_SOCK=$PSOCK"
  RUNS=${BENCH_FILE_RUNS:-5} time_interleaved "$FSTATS" \
    "$KMSCTL --vault $PVAULT file encrypt --key alias/par --no-progress -o - $SRC" \
    "KMSCTL_AGENT_SOCK=$PSOCK $KMSCTL --vault $PVAULT file encrypt --key alias/par --no-progress -o - $SRC"
  "$KMSCTL" agent stop --socket "$PSOCK" 2>/dev/null
  rm -f "$SRC"
  python3 - "$FSTATS" "${BENCH_MD:-}" <<'PY'
import json, statistics, sys
res, md = json.load(open(sys.argv[1]))["results"], sys.argv[2]
m = [statistics.median(r["times"]) for r in res]
cpu = [(r["user"] + r["system"]) for r in res]
load = " ".join(open("/proc/loadavg").read().split()[:3])
lines = [f"load average after {load}", "", "| file encrypt | median wall | CPU (user+sys) |",
         "|---|---:|---:|", f"| without an agent | {m[0]:.3f} s | {cpu[0]:.3f} s |",
         f"| through an agent | {m[1]:.3f} s | {cpu[1]:.3f} s |",
         f"| ratio (target <= 1.10) | **{m[1] / m[0]:.3f}** (met: {'yes' if m[1] / m[0] <= 1.10 else '**no**'}) | |"]
print("\n".join(lines))
if md:
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
PY
fi

# ---- 7. a served encrypt: `kmsctl serve` vs the same user's agent ------------------------------
# `encrypt` of 1 KiB sent to a `kmsctl serve` (the policy decides it) and to a `kmsctl agent` on
# the same vault, interleaved; both serve this user here, so that the difference is the service's
# own work (policy evaluation, the key's aliases and tags read for it). Target: served <= 1.2x
# through the agent. BENCH_SERVE=0 skips this section.
if [[ ${BENCH_SERVE:-1} != 0 ]]; then
  echo
  echo "## 7. encrypt of 1 KiB: through \`kmsctl serve\` vs through \`kmsctl agent\` ($WARMUP warm-up + $RUNS runs each, interleaved)"
  VDIR=$TMP/serve
  mkdir -p -m 700 "$VDIR"
  mkdir -p -m 755 "$VDIR/run"
  VVAULT=$VDIR/vault.db
  "$KMSCTL" --vault "$VVAULT" init --so-pin-file "$VDIR/so.pin" >/dev/null
  "$KMSCTL" --vault "$VVAULT" key create --alias alias/bench >/dev/null
  head -c 1024 /dev/urandom >"$VDIR/plain"
  cat >"$VDIR/policy.toml" <<TOML
[[statements]]
sid = "bench"
effect = "allow"
principals = ["uid:$(id -u)"]
actions = ["kms:Encrypt"]
resources = ["alias/bench"]
TOML
  VSOCK=$VDIR/run/kmsctl.sock
  ASOCK=$VDIR/agent.sock
  show "kmsctl --vault $VVAULT serve --socket $VSOCK --policy $VDIR/policy.toml --json &"
  coproc SERVE { exec "$KMSCTL" --vault "$VVAULT" serve --socket "$VSOCK" --policy "$VDIR/policy.toml" --json 2>/dev/null; }
  SRV_PID=$SERVE_PID  # bash unsets SERVE_PID once the coprocess ends
  on_exit=$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT$/\1/")
  trap 'kill "$SRV_PID" 2>/dev/null || true; "$KMSCTL" agent stop --socket "$ASOCK" 2>/dev/null || true; '"${on_exit:-cleanup}" EXIT
  read -r -t 60 _ <&"${SERVE[0]}" || die "kmsctl serve did not start"
  show "kmsctl --vault $VVAULT agent start --socket $ASOCK"
  "$KMSCTL" --vault "$VVAULT" agent start --socket "$ASOCK" >/dev/null
  VSTATS=$TMP/serve.json
  show "${nice_cmd[*]:+${nice_cmd[*]} }python3 timing loop: 'KMSCTL_AGENT_SOCK=$ASOCK kmsctl --vault $VVAULT encrypt --key alias/bench --in $VDIR/plain' 'KMSCTL_SERVER=$VSOCK kmsctl encrypt --key alias/bench --in $VDIR/plain'"
  time_interleaved "$VSTATS" \
    "KMSCTL_AGENT_SOCK=$ASOCK $KMSCTL --vault $VVAULT encrypt --key alias/bench --in $VDIR/plain" \
    "KMSCTL_SERVER=$VSOCK $KMSCTL encrypt --key alias/bench --in $VDIR/plain"
  "$KMSCTL" agent stop --socket "$ASOCK" 2>/dev/null
  kill "$SRV_PID"
  wait "$SRV_PID" 2>/dev/null || true
  trap "${on_exit:-cleanup}" EXIT
  python3 - "$VSTATS" "${BENCH_MD:-}" <<'PY'
import json, statistics, sys
res, md = json.load(open(sys.argv[1]))["results"], sys.argv[2]
m = [statistics.median(r["times"]) * 1e3 for r in res]
cpu = [(r["user"] + r["system"]) * 1e3 for r in res]
load = " ".join(open("/proc/loadavg").read().split()[:3])
lines = [f"load average after {load}", "", "| encrypt 1 KiB | median wall | client CPU (user+sys) |",
         "|---|---:|---:|", f"| through `kmsctl agent` | {m[0]:.2f} ms | {cpu[0]:.2f} ms |",
         f"| through `kmsctl serve` | {m[1]:.2f} ms | {cpu[1]:.2f} ms |",
         f"| ratio (target <= 1.2) | **{m[1] / m[0]:.3f}** (met: {'yes' if m[1] / m[0] <= 1.2 else '**no**'}) | |"]
print("\n".join(lines))
if md:
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
PY
fi

# ---- 8. kmsctl sign (EC_P256) vs the bare token operation ---------------------------------------
# `kmsctl sign` of a 1 KiB message with a software EC_P256 key (its private key opened from the
# vault, ECDSA in the process, one audited transaction), `kmsctl verify` of that signature with
# the key, and `verify --public-key` (no vault), interleaved with the bare PKCS#11 operation of
# section 1. BENCH_SIGN=0 skips this section.
if [[ ${BENCH_SIGN:-1} != 0 ]]; then
  echo
  echo "## 8. kmsctl sign / verify (EC_P256, 1 KiB) vs the bare token op ($WARMUP warm-up + $RUNS runs each, interleaved)"
  show "kmsctl key create --spec EC_P256 --alias alias/bench-sign"
  "$KMSCTL" key create --spec EC_P256 --alias alias/bench-sign >/dev/null
  "$KMSCTL" key public alias/bench-sign -o "$TMP/sign.pem"
  "$KMSCTL" sign --key alias/bench-sign --algorithm ECDSA_SHA_256 --in "$TMP/plain.1k" -o "$TMP/sig.der"
  GSTATS=$TMP/sign.json
  CMD_SIGN="$KMSCTL sign --key alias/bench-sign --algorithm ECDSA_SHA_256 --in $TMP/plain.1k"
  CMD_VERIFY="$KMSCTL verify --key alias/bench-sign --algorithm ECDSA_SHA_256 --signature $TMP/sig.der --in $TMP/plain.1k"
  CMD_OFFLINE="$KMSCTL verify --public-key $TMP/sign.pem --algorithm ECDSA_SHA_256 --signature $TMP/sig.der --in $TMP/plain.1k"
  show "${nice_cmd[*]:+${nice_cmd[*]} }python3 timing loop: '$CMD_SIGN' '$CMD_BARE' '$CMD_VERIFY' '$CMD_OFFLINE'"
  time_interleaved "$GSTATS" "$CMD_SIGN" "$CMD_BARE" "$CMD_VERIFY" "$CMD_OFFLINE"
  python3 - "$GSTATS" "${BENCH_MD:-}" <<'PY'
import json, statistics, sys
res, md = json.load(open(sys.argv[1]))["results"], sys.argv[2]
m = [statistics.median(r["times"]) * 1e3 for r in res]
cpu = [(r["user"] + r["system"]) * 1e3 for r in res]
load = " ".join(open("/proc/loadavg").read().split()[:3])
names = ["`kmsctl sign` (EC_P256, software key)", "bare PKCS#11 open + login + AES-GCM (`bench_token_op`)",
         "`kmsctl verify --key`", "`kmsctl verify --public-key` (no vault)"]
lines = [f"load average after {load}", "", "| 1 KiB message | median wall | CPU (user+sys) | / bare op |",
         "|---|---:|---:|---:|"]
lines += [f"| {n} | {w:.2f} ms | {c:.2f} ms | {w / m[1]:.2f}x |" for n, w, c in zip(names, m, cpu)]
print("\n".join(lines))
if md:
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
PY
fi

# ---- 9. a large vault against an empty one -----------------------------------------------------
# A vault grown by bench_fill_vault to BENCH_LARGE_KEYS keys (every other one with a rotation
# period, which `status` counts when due), BENCH_LARGE_SECRETS secrets and BENCH_LARGE_RECORDS
# more audit records; `status`, `encrypt` (1 KiB) and `secret get` on it and on the empty vault of
# section 1, interleaved. Then one `audit verify` of the large vault.
if [[ ${BENCH_LARGE:-0} == 1 ]]; then
  LKEYS=${BENCH_LARGE_KEYS:-100000}
  LSECRETS=${BENCH_LARGE_SECRETS:-10000}
  LRECORDS=${BENCH_LARGE_RECORDS:-10000000}
  echo
  echo "## 9. a vault of $LKEYS keys, $LSECRETS secrets and $LRECORDS more audit records against an empty one ($WARMUP warm-up + $RUNS runs each, interleaved)"
  new_vault large
  LARGE=$NEW_VAULT
  show "KMSCTL_PIN=<the PIN> $FILL $LARGE $LRECORDS --keys $LKEYS --secrets $LSECRETS"
  large_start=$(date +%s.%N)
  "$FILL" "$LARGE" "$LRECORDS" --keys "$LKEYS" --secrets "$LSECRETS"
  large_fill_s=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$large_start" "$(date +%s.%N)")
  for v in "$VAULT" "$LARGE"; do
    "$KMSCTL" --vault "$v" key create --alias alias/bench-large >/dev/null
    "$KMSCTL" --vault "$v" secret create bench/large --generate >/dev/null 2>&1
  done
  echo "vault file: $(du -h "$LARGE" | cut -f1) (filled in $large_fill_s s)"
  LSTATS=$TMP/large.json
  cmds=()
  for v in "$VAULT" "$LARGE"; do
    cmds+=("$KMSCTL --vault $v status" "$KMSCTL --vault $v encrypt --key alias/bench-large --in $TMP/plain.1k"
           "$KMSCTL --vault $v secret get bench/large")
  done
  show "${nice_cmd[*]:+${nice_cmd[*]} }python3 timing loop: status, encrypt --key alias/bench-large --in $TMP/plain.1k, secret get bench/large; each with --vault $VAULT and --vault $LARGE"
  time_interleaved "$LSTATS" "${cmds[@]}"
  show "${nice_cmd[*]:+${nice_cmd[*]} }/usr/bin/time -v kmsctl --vault $LARGE audit verify --json"
  : >"$VERIFY"
  verify_once "$LARGE" large
  python3 - "$LSTATS" "$VERIFY" "$LKEYS" "$LSECRETS" "${BENCH_MD:-}" <<'PY'
import json, statistics, sys
res = json.load(open(sys.argv[1]))["results"]
label, wall, rss, records, ok, cpu = open(sys.argv[2]).read().split("\t")
keys, secrets, md = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
m = [statistics.median(r["times"]) * 1e3 for r in res]
c = [(r["user"] + r["system"]) * 1e3 for r in res]
load = " ".join(open("/proc/loadavg").read().split()[:3])
lines = [f"load average after {load}", "",
         f"| command | empty vault | {keys:,} keys, {secrets:,} secrets, {int(records):,} records | large / empty |",
         "|---|---:|---:|---:|"]
for i, name in enumerate(["`status`", "`encrypt` 1 KiB", "`secret get`"]):
    e, l = i, i + 3
    lines.append(f"| {name} | {m[e]:.2f} ms (CPU {c[e]:.2f}) | {m[l]:.2f} ms (CPU {c[l]:.2f}) | {m[l] / m[e]:.3f}x |")
lines.append(f"| `audit verify` | | {float(wall):.2f} s, {int(records) / float(wall):,.0f} records/s, "
             f"{int(rss) / 1024:.1f} MiB peak RSS | |")
print("\n".join(lines))
if md:
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
PY
fi

# ---- 10. a token reached through `p11-kit server` against the same token direct -----------------
# One SoftHSM2 token in $TMP/hsm, exported by `p11-kit server` on a Unix socket; one vault on it
# through p11-kit's forwarding module (p11-kit-client.so: each PKCS#11 call is a round trip on the
# socket), one through SoftHSM2's own module. `status`, `encrypt` (1 KiB) and `secret get` of each,
# interleaved. BENCH_REMOTE=0 skips this section.
CLIENT_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
if [[ ${BENCH_REMOTE:-1} != 0 ]] && command -v p11-kit >/dev/null && [[ -f $CLIENT_MODULE ]]; then
  echo
  echo "## 10. the token through \`p11-kit server\` against the same token direct ($WARMUP warm-up + $RUNS runs each, interleaved)"
  HSM=$TMP/hsm
  mkdir -p "$HSM/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$HSM" >"$HSM/softhsm2.conf"
  show "SOFTHSM2_CONF=$HSM/softhsm2.conf softhsm2-util --init-token --free --label bench-remote --so-pin <random> --pin <the PIN>"
  SOFTHSM2_CONF=$HSM/softhsm2.conf softhsm2-util --init-token --free --label bench-remote \
    --so-pin "$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')" --pin "$KMSCTL_PIN" >/dev/null
  show "SOFTHSM2_CONF=$HSM/softhsm2.conf p11-kit server --foreground --name $HSM/pkcs11.sock --provider $MODULE pkcs11:token=bench-remote"
  SOFTHSM2_CONF=$HSM/softhsm2.conf p11-kit server --foreground --name "$HSM/pkcs11.sock" \
    --provider "$MODULE" "pkcs11:token=bench-remote" >/dev/null &
  P11_PID=$!
  on_exit=$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT$/\1/")
  trap 'kill "$P11_PID" 2>/dev/null || true; '"${on_exit:-cleanup}" EXIT
  for _ in $(seq 300); do [[ -S $HSM/pkcs11.sock ]] && break; sleep 0.02; done
  [[ -S $HSM/pkcs11.sock ]] || die "p11-kit server did not start"
  RSTATS=$TMP/remote.json
  cmds=()
  for how in direct forwarded; do
    mkdir -p "$TMP/$how"
    if [[ $how == direct ]]; then
      env_words="SOFTHSM2_CONF=$HSM/softhsm2.conf"
      mod=$MODULE
    else
      env_words="P11_KIT_SERVER_ADDRESS=unix:path=$HSM/pkcs11.sock"
      mod=$CLIENT_MODULE
    fi
    v=$TMP/$how/vault.db
    show "$env_words kmsctl --vault $v init --pkcs11-module $mod --token-label bench-remote"
    env "$env_words" "$KMSCTL" --vault "$v" init --pkcs11-module "$mod" --token-label bench-remote >/dev/null
    env "$env_words" "$KMSCTL" --vault "$v" key create --alias alias/bench-remote >/dev/null
    env "$env_words" "$KMSCTL" --vault "$v" secret create bench/remote --generate >/dev/null 2>&1
    cmds+=("$env_words $KMSCTL --vault $v status" "$env_words $KMSCTL --vault $v encrypt --key alias/bench-remote --in $TMP/plain.1k"
           "$env_words $KMSCTL --vault $v secret get bench/remote")
  done
  show "${nice_cmd[*]:+${nice_cmd[*]} }python3 timing loop: status, encrypt --key alias/bench-remote --in $TMP/plain.1k, secret get bench/remote; each direct and forwarded"
  time_interleaved "$RSTATS" "${cmds[@]}"
  kill "$P11_PID"
  wait "$P11_PID" 2>/dev/null || true
  trap "${on_exit:-cleanup}" EXIT
  python3 - "$RSTATS" "${BENCH_MD:-}" <<'PY'
import json, statistics, sys
res, md = json.load(open(sys.argv[1]))["results"], sys.argv[2]
m = [statistics.median(r["times"]) * 1e3 for r in res]
c = [(r["user"] + r["system"]) * 1e3 for r in res]
load = " ".join(open("/proc/loadavg").read().split()[:3])
lines = [f"load average after {load}", "",
         "| command | SoftHSM2's module | through `p11-kit server` | forwarded / direct |",
         "|---|---:|---:|---:|"]
for i, name in enumerate(["`status`", "`encrypt` 1 KiB", "`secret get`"]):
    d, f = i, i + 3
    lines.append(f"| {name} | {m[d]:.2f} ms (CPU {c[d]:.2f}) | {m[f]:.2f} ms (CPU {c[f]:.2f}) | {m[f] / m[d]:.3f}x |")
print("\n".join(lines))
if md:
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
PY
fi

# ---- 11. a vault in PostgreSQL against a vault file ----------------------------------------------
# A throwaway cluster on a local unix socket (tests/pg/cluster.sh); one SoftHSM2 token for both
# vaults, one in a database there, one in a file. `status`, `encrypt` (1 KiB) and `secret get`
# of each, interleaved (target: the database's within 2x the file's), each command run by itself
# and served by an agent of that vault (a served client neither connects nor loads libpq: its
# empty KMSCTL_PIN_FILE makes one that the agent did not serve fail); then 16 clients at once
# encrypting (each one audited write) on each, for the aggregate audited writes per second, and
# 16 clients on 3 hosts sharing a third vault in the database, its token behind `p11-kit server`.
# BENCH_PG=0 skips this section.
if [[ ${BENCH_PG:-1} != 0 ]] && [[ -n $(find /usr/lib/postgresql -name initdb 2>/dev/null) ]]; then
  echo
  echo "## 11. a vault in PostgreSQL against a vault file ($WARMUP warm-up + $RUNS runs each, interleaved)"
  source "$ROOT/tests/pg/cluster.sh"
  show "pg_cluster_start  # tests/pg/cluster.sh: initdb, pg_ctl start on a unix socket"
  pg_cluster_start || die "the PostgreSQL cluster did not start"
  on_exit=$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT$/\1/")
  trap 'pg_cluster_stop; '"${on_exit:-cleanup}" EXIT
  PGT=$TMP/pgtoken
  mkdir -p "$PGT/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$PGT" >"$PGT/softhsm2.conf"
  SOFTHSM2_CONF=$PGT/softhsm2.conf softhsm2-util --init-token --free --label bench-pg \
    --so-pin "$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')" --pin "$KMSCTL_PIN" >/dev/null
  "${PG_AS[@]}" "$PG_BINDIR/psql" -q -h "$PG_CLUSTER_DIR" -U kms -d postgres -c "CREATE DATABASE bench" >/dev/null
  PG_VAULT="host=$PG_CLUSTER_DIR port=5432 user=kms dbname=bench"
  FILE_VAULT=$TMP/pgfile/vault.db
  mkdir -p "$TMP/pgfile"
  cmds=()
  n=0
  for v in "$FILE_VAULT" "$PG_VAULT"; do
    show "SOFTHSM2_CONF=$PGT/softhsm2.conf kmsctl --vault '$v' init --pkcs11-module $MODULE --token-label bench-pg"
    SOFTHSM2_CONF=$PGT/softhsm2.conf "$KMSCTL" --vault "$v" init --pkcs11-module "$MODULE" --token-label bench-pg >/dev/null
    SOFTHSM2_CONF=$PGT/softhsm2.conf "$KMSCTL" --vault "$v" key create --alias alias/bench-pg >/dev/null
    SOFTHSM2_CONF=$PGT/softhsm2.conf "$KMSCTL" --vault "$v" secret create bench/pg --generate >/dev/null 2>&1
    n=$((n + 1))
    show "SOFTHSM2_CONF=$PGT/softhsm2.conf kmsctl --vault '$v' agent start --socket $TMP/pg-agent$n.sock"
    SOFTHSM2_CONF=$PGT/softhsm2.conf "$KMSCTL" --vault "$v" agent start --socket "$TMP/pg-agent$n.sock" >/dev/null
    w="SOFTHSM2_CONF=$PGT/softhsm2.conf KMSCTL_VAULT='$v' $KMSCTL"
    a="KMSCTL_AGENT_SOCK=$TMP/pg-agent$n.sock KMSCTL_PIN_FILE= KMSCTL_VAULT='$v' $KMSCTL"
    for c in "$w" "$a"; do
      cmds+=("$c status" "$c encrypt --key alias/bench-pg --in $TMP/plain.1k" "$c secret get bench/pg")
    done
  done
  show "${nice_cmd[*]:+${nice_cmd[*]} }python3 timing loop: status, encrypt --key alias/bench-pg --in $TMP/plain.1k, secret get bench/pg; each on the file and in the database, by itself and through the vault's agent"
  PSTATS=$TMP/pg.json
  time_interleaved "$PSTATS" "${cmds[@]}"
  show "16 clients at once, ${BENCH_PG_WRITES:-320} encrypts in all (xargs -P 16), on the file then in the database, twice"
  CSTATS=$TMP/pg-concurrent.txt
  : >"$CSTATS"
  for round in 1 2; do
    for v in "$FILE_VAULT" "$PG_VAULT"; do
      t0=$(date +%s.%N)
      seq "${BENCH_PG_WRITES:-320}" | SOFTHSM2_CONF=$PGT/softhsm2.conf KMSCTL_VAULT=$v \
        xargs -P 16 -I{} "$KMSCTL" encrypt --key alias/bench-pg --in "$TMP/plain.1k" >/dev/null
      t1=$(date +%s.%N)
      echo "$round ${v:0:5} $t0 $t1" >>"$CSTATS"
    done
  done
  for v in "$FILE_VAULT" "$PG_VAULT"; do
    SOFTHSM2_CONF=$PGT/softhsm2.conf "$KMSCTL" --vault "$v" audit verify >/dev/null ||
      die "audit verify failed after the concurrent writes ($v)"
  done
  for n in 1 2; do "$KMSCTL" agent stop --socket "$TMP/pg-agent$n.sock" >/dev/null; done
  # The same 16 clients on 3 hosts sharing a third vault, in the database bench3: the token is
  # exported by `p11-kit server` (the HSM host), and each host (a home of its own) reaches it
  # through p11-kit-client.so; 6, 5 and 5 clients, started together.
  if command -v p11-kit >/dev/null && [[ -f $CLIENT_MODULE ]]; then
    show "SOFTHSM2_CONF=$PGT/softhsm2.conf p11-kit server --foreground --name $PGT/pkcs11.sock --provider $MODULE pkcs11:token=bench-pg"
    SOFTHSM2_CONF=$PGT/softhsm2.conf p11-kit server --foreground --name "$PGT/pkcs11.sock" \
      --provider "$MODULE" "pkcs11:token=bench-pg" >/dev/null &
    PG_P11_PID=$!
    trap 'kill "$PG_P11_PID" 2>/dev/null || true; pg_cluster_stop; '"${on_exit:-cleanup}" EXIT
    for _ in $(seq 300); do [[ -S $PGT/pkcs11.sock ]] && break; sleep 0.02; done
    [[ -S $PGT/pkcs11.sock ]] || die "p11-kit server did not start"
    "${PG_AS[@]}" "$PG_BINDIR/psql" -q -h "$PG_CLUSTER_DIR" -U kms -d postgres -c "CREATE DATABASE bench3" >/dev/null
    PG3="host=$PG_CLUSTER_DIR port=5432 user=kms dbname=bench3"
    HOSTENV="P11_KIT_SERVER_ADDRESS=unix:path=$PGT/pkcs11.sock"
    mkdir -p "$TMP/pghost0" "$TMP/pghost1" "$TMP/pghost2"
    show "$HOSTENV HOME=$TMP/pghost0 kmsctl --vault '$PG3' init --pkcs11-module $CLIENT_MODULE --token-label bench-pg"
    env "$HOSTENV" HOME="$TMP/pghost0" "$KMSCTL" --vault "$PG3" init --pkcs11-module "$CLIENT_MODULE" --token-label bench-pg >/dev/null
    env "$HOSTENV" HOME="$TMP/pghost0" "$KMSCTL" --vault "$PG3" key create --alias alias/bench-pg >/dev/null
    show "3 hosts ($HOSTENV, HOME=$TMP/pghostN) with 6, 5 and 5 clients (xargs -P), ${BENCH_PG_WRITES:-320} encrypts in all, twice"
    per=$(((${BENCH_PG_WRITES:-320} + 2) / 3))
    for round in 1 2; do
      t0=$(date +%s.%N)
      hosts=()
      for h in 0 1 2; do
        seq "$per" | env "$HOSTENV" HOME="$TMP/pghost$h" KMSCTL_VAULT="$PG3" \
          xargs -P $((h == 0 ? 6 : 5)) -I{} "$KMSCTL" encrypt --key alias/bench-pg --in "$TMP/plain.1k" >/dev/null &
        hosts+=($!)
      done
      for pid in "${hosts[@]}"; do wait "$pid" || die "a host's encrypts failed"; done
      t1=$(date +%s.%N)
      echo "$round hosts3 $t0 $t1 $((3 * per))" >>"$CSTATS"
    done
    env "$HOSTENV" HOME="$TMP/pghost0" "$KMSCTL" --vault "$PG3" audit verify >/dev/null ||
      die "audit verify failed after the concurrent writes of 3 hosts"
    kill "$PG_P11_PID"
    wait "$PG_P11_PID" 2>/dev/null || true
  fi
  pg_cluster_stop
  trap "${on_exit:-cleanup}" EXIT
  python3 - "$PSTATS" "$CSTATS" "${BENCH_PG_WRITES:-320}" "${BENCH_MD:-}" <<'PY'
import json, statistics, sys
res, cfile, writes, md = json.load(open(sys.argv[1]))["results"], sys.argv[2], int(sys.argv[3]), sys.argv[4]
m = [statistics.median(r["times"]) * 1e3 for r in res]
c = [(r["user"] + r["system"]) * 1e3 for r in res]
load = " ".join(open("/proc/loadavg").read().split()[:3])
lines = [f"load average after {load}", "",
         "| command | vault file (SQLite) | vault in PostgreSQL (local socket) | PostgreSQL / file | target |",
         "|---|---:|---:|---:|---|"]
# cmds: file (3 by itself, 3 served), then the database (the same 6)
for served in (0, 3):
    for i, name in enumerate(["`status`", "`encrypt` 1 KiB", "`secret get`"]):
        f, p = served + i, 6 + served + i
        how = ", served by an agent" if served else ""
        lines.append(f"| {name}{how} | {m[f]:.2f} ms (CPU {c[f]:.2f}) | {m[p]:.2f} ms (CPU {c[p]:.2f}) | "
                     f"{m[p] / m[f]:.3f}x | <= 2x: {'yes' if m[p] <= 2 * m[f] else '**no**'} |")
rates = {"file": [], "pg": [], "hosts3": []}
for line in open(cfile):
    rnd, kind, t0, t1, *n = line.split()
    kind = kind if kind == "hosts3" else "pg" if kind.startswith("host=") else "file"
    rates[kind].append(int(n[0] if n else writes) / (float(t1) - float(t0)))
lines += ["", f"16 clients at once, {writes} audited encrypts each time (best of two rounds): "
          f"vault file {max(rates['file']):.0f}/s, PostgreSQL {max(rates['pg']):.0f}/s; "
          "`audit verify` passes on both afterwards"]
if rates["hosts3"]:
    lines += ["", "16 clients on 3 hosts (6, 5 and 5; the token through `p11-kit server`), one vault "
              f"in PostgreSQL (best of two rounds): {max(rates['hosts3']):.0f} audited writes/s; "
              "`audit verify` passes afterwards"]
print("\n".join(lines))
if md:
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
PY
fi
