#!/usr/bin/env bash
# kmsctl rotation hook: rotates a PostgreSQL role's password.
#
# The secret's value is a JSON object:
#   {"host": "db.example or /socket/dir", "port": 5432, "user": "app", "password": "...",
#    "database": "app"}
# The password is changed by an admin role whose credentials are another kmsctl secret of the
# same shape, named by --admin-secret NAME, by the secret's "admin_secret" field, or by
# $KMSCTL_PG_ADMIN_SECRET.
#
#   kmsctl secret create db/app --value-file app.json \
#     --rotation-period 30d --rotation-command 'scripts/rotators/postgres.sh --admin-secret db/admin'
#
# Steps (README "Secrets" describes the protocol):
#   create  prints nothing: kmsctl keeps the JSON fields and generates a new "password"
#   set     ALTER ROLE user PASSWORD <pending password>, connected as the admin
#   test    connects as the user with the pending password; on failure, sets the current
#           password back (so the old one keeps working) and fails
#   finish  nothing to do
# Values arrive on stdin (pending) and fd 3 (current); passwords reach psql through its
# environment (PGPASSWORD, \getenv), never through argv. Needs psql (PostgreSQL 15+) and jq.
set -euo pipefail

admin_secret=${KMSCTL_PG_ADMIN_SECRET:-}
while (($#)); do
  case $1 in
    --admin-secret) admin_secret=$2; shift 2 ;;
    *) echo "postgres.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

step=${KMSCTL_ROTATION_STEP:?postgres.sh runs as a kmsctl rotation hook}
kmsctl=${KMSCTL_BIN:-kmsctl}
current=$(cat <&3)
pending=$(cat)

field() { jq -er --arg f "$2" '.[$f] | if type == "number" then tostring else . end' <<<"$1"; }

check() {
  local f
  for f in host port user password; do
    field "$1" "$f" >/dev/null || { echo "postgres.sh: the secret has no \"$f\" field" >&2; exit 2; }
  done
}

# psql as the role in JSON $1 (password from it, or $2 when given), reading SQL from stdin.
psql_as() {
  local creds=$1 password=${2:-}
  [[ -n $password ]] || password=$(field "$creds" password)
  PGPASSWORD=$password PGCONNECT_TIMEOUT=10 psql -X -q -v ON_ERROR_STOP=1 \
    -h "$(field "$creds" host)" -p "$(field "$creds" port)" -U "$(field "$creds" user)" \
    -d "$(field "$creds" database 2>/dev/null || echo postgres)" "${@:3}"
}

admin_creds() {
  [[ -n $admin_secret ]] || admin_secret=$(field "$current" admin_secret 2>/dev/null || true)
  if [[ -z $admin_secret ]]; then
    echo "postgres.sh: no admin secret (pass --admin-secret NAME)" >&2
    exit 2
  fi
  if [[ $admin_secret == "${KMSCTL_SECRET_NAME:-}" ]]; then
    printf '%s' "$current"  # the role changes its own password
  else
    "$kmsctl" secret get "$admin_secret"
  fi
}

# ALTER ROLE <user of $1> PASSWORD <password of $1>, as the admin.
set_password() {
  local admin
  admin=$(admin_creds)
  KMSCTL_PG_ROLE=$(field "$1" user) KMSCTL_PG_PASSWORD=$(field "$1" password) \
    psql_as "$admin" "" <<'SQL'
\getenv role KMSCTL_PG_ROLE
\getenv pw KMSCTL_PG_PASSWORD
ALTER ROLE :"role" PASSWORD :'pw';
SQL
}

case $step in
  create)
    check "$current"
    ;;
  set)
    check "$pending"
    set_password "$pending"
    ;;
  test)
    check "$pending"
    if ! psql_as "$pending" "" -c 'SELECT 1' >/dev/null; then
      echo "postgres.sh: the new password does not log in; setting the current one back" >&2
      set_password "$current" || echo "postgres.sh: could not set the current password back" >&2
      exit 1
    fi
    ;;
  finish)
    ;;
  *)
    echo "postgres.sh: unknown step $step" >&2
    exit 2
    ;;
esac
