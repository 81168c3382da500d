#!/usr/bin/env bash
# Install the Debian packages listed in tools/system-packages.txt whose executables are
# missing. Idempotent: with everything present it changes nothing and needs no root.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

have() { # executable
  command -v "$1" >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

missing=()
while read -r package executables; do
  case "$package" in ''|'#'*) continue ;; esac
  for exe in $executables; do
    if ! have "$exe"; then missing+=("$package"); break; fi
  done
done < "$HERE/system-packages.txt"
[ ${#missing[@]} -gt 0 ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing system packages: ${missing[*]}; run as root:" \
    "apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 2
fi
echo "system-deps: installing ${missing[*]} (Debian packages; about a minute)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a default PostgreSQL cluster on 5432; the tests run their own clusters.
if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v pg_ctlcluster >/dev/null; then
  for conf in /etc/postgresql/*/main; do
    [ -d "$conf" ] || continue
    version=$(basename "$(dirname "$conf")")
    pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
  done
fi
# Debian's etcd-server enables an etcd on 2379; the tests and make up run their own.
if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
while read -r package executables; do
  case "$package" in ''|'#'*) continue ;; esac
  for exe in $executables; do
    have "$exe" || { echo "error: $package installed but $exe is still missing" >&2; exit 1; }
  done
done < "$HERE/system-packages.txt"
