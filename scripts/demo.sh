#!/usr/bin/env bash
# A tour of kmsctl's main job on a throw-away vault and a private SoftHSM2 token: installs what is
# missing and builds (scripts/setup.sh), then prints each command before running it.
#
# Everything lives in a fresh temporary directory that is removed at the end. The token PIN is
# read from a 0600 file (KMSCTL_PIN_FILE), never given on the command line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

KMSCTL_BIN=$PWD/build/kmsctl
[[ -x $KMSCTL_BIN ]] || { echo "demo: $KMSCTL_BIN was not built" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/kmsctl-demo.XXXXXX")
trap '"$KMSCTL_BIN" -q agent stop --socket "$dir/agent.sock" 2>/dev/null || true; rm -rf "$dir"' EXIT

export KMSCTL_VAULT=$dir/vault.db
export KMSCTL_PIN_FILE=$dir/pin
unset KMSCTL_PIN
(umask 077 && printf '%s\n' "demo-pin-$RANDOM$RANDOM" >"$KMSCTL_PIN_FILE")

# `kmsctl ...` inside the demo means the freshly built binary.
kmsctl() { "$KMSCTL_BIN" "$@"; }

if [[ -t 1 ]]; then bold=$'\033[1m' blue=$'\033[1;34m' off=$'\033[0m'; else bold='' blue='' off=''; fi

# run CMD [ARGS...]: prints the command as a user would type it (temp dir shown as $dir), then runs
# it. The demo stops at the first command that fails.
run() {
  local shown="$*"
  printf '\n%s$ %s%s\n' "$bold" "${shown//$dir/\$dir}" "$off"
  "$@"
}

section() { printf '\n%s# %s%s\n' "$blue" "$*" "$off"; }

cat <<EOF

kmsctl demo
  \$dir              = $dir
  KMSCTL_VAULT      = \$dir/vault.db
  KMSCTL_PIN_FILE   = \$dir/pin   (mode $(stat -c %a "$KMSCTL_PIN_FILE"))
EOF

section "A new vault, sealed by a new private SoftHSM2 token beside it"
run kmsctl init --so-pin-file "$dir/so-pin"
run kmsctl status

section "A key, and direct encryption of a small value bound to an encryption context"
run kmsctl key create --alias alias/demo --description "demo key" --rotation-period 90d
(umask 077 && printf 'db-password-%s' "$RANDOM" >"$dir/small.txt")
run kmsctl encrypt --key alias/demo --context app=demo --in "$dir/small.txt" --out "$dir/small.enc"
run cat "$dir/small.enc"
run kmsctl key rotate alias/demo
run kmsctl decrypt --context app=demo --in "$dir/small.enc" --out "$dir/small.dec"
run cmp "$dir/small.txt" "$dir/small.dec"
run kmsctl key describe alias/demo

section "A key, and a file encrypted for it (envelope encryption: a fresh data key per file)"
run kmsctl key create --alias alias/artifacts --description "build artifacts"
head -c 5000000 /dev/urandom >"$dir/artifact.bin"
run ls -l "$dir/artifact.bin"
run kmsctl file encrypt --key alias/artifacts --context build=42 "$dir/artifact.bin"
run kmsctl file inspect "$dir/artifact.bin.kenc"
run kmsctl file decrypt --context build=42 --out-dir "$dir/out" --mkdir "$dir/artifact.bin.kenc"
run cmp "$dir/artifact.bin" "$dir/out/artifact.bin"
echo "the decrypted file is identical"

section "A wrong context, or a damaged file, releases nothing (exit 5)"
run kmsctl file decrypt --context build=43 -o "$dir/out/wrong.bin" "$dir/artifact.bin.kenc" || echo "exit $?"
run ls "$dir/out"

section "Secrets: a generated password, read, rotated by a tiny hook, handed to a program"
run kmsctl secret create demo/db-password --generate --length 20
run kmsctl secret get demo/db-password
echo
# The hook gets the step and version ids in its environment, the pending value on stdin and the
# current one on fd 3; here it only logs the steps (a real one changes the password in the database,
# like scripts/rotators/postgres.sh).
cat >"$dir/hook.sh" <<'HOOK'
#!/bin/sh
echo "hook: step $KMSCTL_ROTATION_STEP (current v$KMSCTL_CURRENT_VERSION_ID, pending v$KMSCTL_PENDING_VERSION_ID)" >&2
HOOK
chmod 700 "$dir/hook.sh"
run kmsctl secret create demo/api-token --generate --rotation-command "$dir/hook.sh"
run kmsctl secret rotate demo/api-token
run kmsctl secret versions demo/api-token
run kmsctl exec --secret demo/api-token=TOKEN -- sh -c 'echo "the program got a ${#TOKEN}-character TOKEN"'

section "An agent unlocks the vault once and serves this user's commands without the PIN (like gpg-agent)"
run kmsctl agent start --socket "$dir/agent.sock" --idle-timeout 5m
export KMSCTL_AGENT_SOCK=$dir/agent.sock  # what `eval "$(kmsctl agent start)"` does
unset KMSCTL_PIN_FILE                      # from here on, no PIN is given
run kmsctl secret get demo/db-password
echo
run kmsctl agent status
run kmsctl agent stop
unset KMSCTL_AGENT_SOCK
export KMSCTL_PIN_FILE=$dir/pin

section "The cron job: with -q, it prints (and cron mails) only what it did or what failed"
run kmsctl -q maintain

section "Every command left a record in the hash-chained audit log"
run kmsctl audit list
run kmsctl audit verify

section "A consistent online backup (still sealed by the token) and a SIEM export"
run kmsctl vault backup "$dir/backup.db"
run ls -l "$dir"
run kmsctl audit export -o "$dir/audit.jsonl"
run head -n 2 "$dir/audit.jsonl"

printf '\ndemo: done (removing %s)\n' "$dir"
