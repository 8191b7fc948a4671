#!/usr/bin/env bash
# Install (when root and missing) and start a local PostgreSQL server for the tests,
# create the `chargeback` role and the `chargeback_test` database, and print the URL
# to export as CHARGEBACK_TEST_PG.
set -euo pipefail
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then echo "PostgreSQL is not installed; install Debian's postgresql package" >&2; exit 1; fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
cluster=$(pg_lsclusters --no-header | head -n 1)
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_createcluster "$version" main >&2
  cluster=$(pg_lsclusters --no-header | head -n 1)
fi
read -r version name port status _ <<<"$cluster"
if [ "$status" != "online" ]; then
  pg_ctlcluster "$version" "$name" start >&2
fi
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sh -c "$1"; fi; }
for _ in $(seq 1 30); do
  as_postgres "pg_isready -q -p $port" && break
  sleep 1
done
as_postgres "psql -q -p $port -tc \"SELECT 1 FROM pg_roles WHERE rolname = 'chargeback'\" | grep -q 1 || psql -q -p $port -c \"CREATE ROLE chargeback LOGIN SUPERUSER PASSWORD 'chargeback'\"" >&2
as_postgres "psql -q -p $port -tc \"SELECT 1 FROM pg_database WHERE datname = 'chargeback_test'\" | grep -q 1 || createdb -p $port -O chargeback chargeback_test" >&2
echo "postgresql://chargeback:chargeback@127.0.0.1:$port/chargeback_test"
