#!/usr/bin/env bash
# Install the system packages the integration tests need (Debian): PostgreSQL.
# Idempotent: does nothing when the server binaries are already there.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: PostgreSQL server binaries are missing; run as root: apt-get install -y postgresql" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# Debian starts a default cluster on 5432; the tests run their own clusters.
if command -v pg_ctlcluster >/dev/null; then
  for conf in /etc/postgresql/*/main; do
    [ -d "$conf" ] || continue
    version=$(basename "$(dirname "$conf")")
    pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
  done
fi
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
