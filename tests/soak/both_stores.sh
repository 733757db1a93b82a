#!/usr/bin/env bash
# Run tests/soak/<module>.py (or a dotted module such as bench.run) on SQLite, then on two
# fresh PostgreSQL databases where PostgreSQL runs here (made and dropped as .ci/run does).
# Fails if either run fails.
# Usage: tests/soak/both_stores.sh soak|crash|bench.run [options of the module]
set -uo pipefail
cd "$(dirname "$0")/../.."
module="$1"
shift
case "$module" in
  *.*) target="$module" ;;
  *) target="tests.soak.${module}" ;;
esac
py="${PY:-.venv/bin/python}"
status=0

echo "== make ${module}: SQLite"
env -u DATABASE_URL -u IDENTITY_DATABASE_URL "$py" -m "${target}" "$@" || status=1

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "== make ${module}: no PostgreSQL here, SQLite only"
  exit "$status"
fi
pg_ctlcluster 15 main start 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q" && break
  sleep 1
done
db="fact_soak_$$"
# the role may own another run's databases right now: create it only where it is missing
su postgres -c "psql -q -v ON_ERROR_STOP=1" <<SQL || exit 1
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fact_soak') THEN
    CREATE ROLE fact_soak LOGIN PASSWORD 'fact_soak';
  END IF;
END \$\$;
CREATE DATABASE ${db} OWNER fact_soak;
CREATE DATABASE ${db}_identity OWNER fact_soak;
SQL
cleanup() {
  su postgres -c "psql -q -c 'DROP DATABASE IF EXISTS ${db}' -c 'DROP DATABASE IF EXISTS ${db}_identity'" || true
}
trap cleanup EXIT

# amcheck lets the crash run check PostgreSQL's own pages (its integrity_check); optional
for name in "${db}" "${db}_identity"; do
  su postgres -c "psql -q -v ON_ERROR_STOP=1 -d ${name}" <<SQL >/dev/null 2>&1 || echo "(amcheck not available)"
CREATE EXTENSION IF NOT EXISTS amcheck;
GRANT EXECUTE ON FUNCTION bt_index_check(regclass, boolean) TO fact_soak;
GRANT EXECUTE ON FUNCTION verify_heapam(regclass, boolean, boolean, text, bigint, bigint) TO fact_soak;
SQL
done

echo "== make ${module}: PostgreSQL"
DATABASE_URL="postgresql://fact_soak:fact_soak@127.0.0.1:5432/${db}" \
IDENTITY_DATABASE_URL="postgresql://fact_soak:fact_soak@127.0.0.1:5432/${db}_identity" \
  "$py" -m "${target}" "$@" || status=1

[ "$status" -eq 0 ] && echo "== make ${module}: both stores passed"
exit "$status"
