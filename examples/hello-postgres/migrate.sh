#!/bin/sh
# The release command: every /migrations/N_*.sql with N up to the release's major version
# (SHIPIT_RELEASE, such as 2.0.0+3f9c2ab), once each, in order, each in one transaction with
# its row in schema_migrations.
set -eu
# psql's notices (such as "already exists, skipping") are not news.
export PGOPTIONS=--client-min-messages=warning
major=${SHIPIT_RELEASE%%.*}
psql -v ON_ERROR_STOP=1 -q "$DATABASE_URL" \
  -c 'create table if not exists schema_migrations (version int primary key, at timestamptz not null default now())'
for f in /migrations/*.sql; do
  n=$(basename "$f")
  n=${n%%_*}
  [ "$n" -le "$major" ] || continue
  if [ -z "$(psql -tAq "$DATABASE_URL" -c "select 1 from schema_migrations where version = $n")" ]; then
    echo "applying $(basename "$f")"
    psql -v ON_ERROR_STOP=1 -q -1 "$DATABASE_URL" -f "$f" -c "insert into schema_migrations (version) values ($n)"
  fi
done
echo "schema at version $(psql -tAq "$DATABASE_URL" -c 'select coalesce(max(version), 0) from schema_migrations')"
