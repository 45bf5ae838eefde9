# Sourced by bash scripts (tests/pg/with_postgres.sh, scripts/bench.sh): a throwaway PostgreSQL
# cluster. pg_cluster_start makes one with initdb in a new temporary directory, listening only
# on a unix socket there (no TCP), trusting its one role `kms` (a superuser) on that socket, and
# sets PG_CLUSTER_DIR and KMSCTL_TEST_PG (a libpq connection string to its `postgres` database);
# pg_cluster_stop stops and removes it. initdb refuses to run as root: as root the cluster
# belongs to the `postgres` user (Debian's `postgresql` package makes it). The server binaries
# are Debian's (/usr/lib/postgresql/N/bin).

pg_cluster_start() {
  PG_BINDIR=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
    sort -V | tail -n1)
  if [[ -z $PG_BINDIR || ! -x $PG_BINDIR/initdb ]]; then
    echo "no PostgreSQL server binaries; scripts/setup.sh installs them" >&2
    return 1
  fi
  # As root the cluster's user must reach the directory: /tmp, not a private TMPDIR.
  local base=${TMPDIR:-/tmp}
  PG_AS=()
  if [[ $(id -u) == 0 ]]; then
    base=/tmp
    PG_AS=(runuser -u postgres --)
  fi
  PG_CLUSTER_DIR=$(mktemp -d "$base/kmsctl-pg.XXXXXX")
  [[ $(id -u) == 0 ]] && chown postgres: "$PG_CLUSTER_DIR"
  chmod 700 "$PG_CLUSTER_DIR"
  (cd "$PG_CLUSTER_DIR" && "${PG_AS[@]}" "$PG_BINDIR/initdb" -D "$PG_CLUSTER_DIR/data" -U kms \
    --auth=trust -E UTF8 --locale=C.UTF-8 --no-instructions >"$PG_CLUSTER_DIR/initdb.log" 2>&1) ||
    { cat "$PG_CLUSTER_DIR/initdb.log" >&2; return 1; }
  (cd "$PG_CLUSTER_DIR" && "${PG_AS[@]}" "$PG_BINDIR/pg_ctl" -D "$PG_CLUSTER_DIR/data" -w \
    -l "$PG_CLUSTER_DIR/server.log" -o "-k $PG_CLUSTER_DIR -c listen_addresses= -p 5432" \
    start >/dev/null) || { cat "$PG_CLUSTER_DIR/server.log" >&2; return 1; }
  KMSCTL_TEST_PG="host=$PG_CLUSTER_DIR port=5432 user=kms dbname=postgres"
}

pg_cluster_stop() {
  [[ -n ${PG_CLUSTER_DIR:-} ]] || return 0
  if [[ -f $PG_CLUSTER_DIR/data/postmaster.pid ]]; then
    "${PG_AS[@]}" "$PG_BINDIR/pg_ctl" -D "$PG_CLUSTER_DIR/data" -m immediate -w stop \
      >/dev/null 2>&1 || true
  fi
  rm -rf "$PG_CLUSTER_DIR"
  PG_CLUSTER_DIR=
}
