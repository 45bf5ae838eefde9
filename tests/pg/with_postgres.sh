#!/usr/bin/env bash
# with_postgres.sh COMMAND [ARG...]: runs COMMAND beside a throwaway PostgreSQL cluster and
# returns its exit code. The cluster is made by initdb in a new temporary directory, listens only
# on a unix socket in that directory (no TCP), trusts its one role `kms` (a superuser) there, and
# is stopped and removed when COMMAND ends, however it ends. COMMAND finds it in KMSCTL_TEST_PG
# (a libpq connection string to its `postgres` database) and PGHOST/PGPORT/PGUSER.
#
# initdb refuses to run as root: as root the cluster belongs to the `postgres` user (Debian's
# `postgresql` package makes it). The server binaries are Debian's (/usr/lib/postgresql/N/bin).
set -euo pipefail

bindir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
if [[ -z $bindir || ! -x $bindir/initdb ]]; then
  echo "with_postgres.sh: no PostgreSQL server binaries; scripts/setup.sh installs them" >&2
  exit 1
fi
# As root the cluster's user must reach the directory: /tmp, not a private TMPDIR.
base=${TMPDIR:-/tmp}
[[ $(id -u) == 0 ]] && base=/tmp
root=$(mktemp -d "$base/kmsctl-pg.XXXXXX")
as=()
if [[ $(id -u) == 0 ]]; then
  chown postgres: "$root"
  as=(runuser -u postgres --)
fi
chmod 700 "$root"
stop() {
  if [[ -f $root/data/postmaster.pid ]]; then
    "${as[@]}" "$bindir/pg_ctl" -D "$root/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$root"
}
trap stop EXIT
(cd "$root" && "${as[@]}" "$bindir/initdb" -D "$root/data" -U kms --auth=trust -E UTF8 \
  --locale=C.UTF-8 --no-instructions >"$root/initdb.log" 2>&1) ||
  { cat "$root/initdb.log" >&2; exit 1; }
(cd "$root" && "${as[@]}" "$bindir/pg_ctl" -D "$root/data" -w -l "$root/server.log" \
  -o "-k $root -c listen_addresses= -p 5432" start >/dev/null) ||
  { cat "$root/server.log" >&2; exit 1; }
export PGHOST=$root PGPORT=5432 PGUSER=kms
export KMSCTL_TEST_PG="host=$root port=5432 user=kms dbname=postgres"
set +e
"$@"
rc=$?
set -e
exit $rc
