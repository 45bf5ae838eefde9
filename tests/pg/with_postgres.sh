#!/usr/bin/env bash
# with_postgres.sh COMMAND [ARG...]: runs COMMAND beside a throwaway PostgreSQL cluster
# (tests/pg/cluster.sh) and returns its exit code; the cluster is stopped and removed when
# COMMAND ends, however it ends. COMMAND finds it in KMSCTL_TEST_PG (a libpq connection string
# to its `postgres` database, as the superuser `kms`) and PGHOST/PGPORT/PGUSER.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
trap pg_cluster_stop EXIT
pg_cluster_start
export PGHOST=$PG_CLUSTER_DIR PGPORT=5432 PGUSER=kms KMSCTL_TEST_PG
set +e
"$@"
rc=$?
set -e
exit $rc
