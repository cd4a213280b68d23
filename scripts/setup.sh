#!/usr/bin/env bash
# Prepares this checkout to run: nats-server (apt-get), node_modules (npm ci, only when missing or
# older than package-lock.json), then `npm run build`. Idempotent: a second run installs nothing
# and only rebuilds. Used by `npm start`, `npm test` and .ci/run.
#
#   scripts/setup.sh           nats-server + dependencies + build
#   scripts/setup.sh --bench   also PostgreSQL 15 server binaries (pg_ctl, postgres) for bench/
#
# nats-server is found as the code finds it: $FLOTILLA_NATS_SERVER, else PATH, else
# ~/.cache/flotilla/bin/nats-server, else /usr/sbin or /usr/local/sbin; apt-get runs only when
# none of them exists.
set -euo pipefail
cd "$(dirname "$0")/.."

bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup: unknown argument $arg (use --bench)" >&2; exit 2 ;;
  esac
done

say() { echo "setup: $*"; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); else
    say "not root and no sudo: apt-get installs will fail" >&2
  fi
fi

apt_updated=0
# apt_install PKG...: install; on failure refresh the package lists once and try again.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not available: install $* yourself" >&2
    return 1
  fi
  say "installing $* with apt-get"
  if "${sudo_cmd[@]}" apt-get install -y -q "$@" >/tmp/flotilla-setup-apt.log 2>&1; then return 0; fi
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get install failed; running apt-get update once"
    "${sudo_cmd[@]}" apt-get update -q >>/tmp/flotilla-setup-apt.log 2>&1
    apt_updated=1
    "${sudo_cmd[@]}" apt-get install -y -q "$@" >>/tmp/flotilla-setup-apt.log 2>&1 && return 0
  fi
  say "apt-get install $* failed; see /tmp/flotilla-setup-apt.log" >&2
  return 1
}

# 1. nats-server
if [ -n "${FLOTILLA_NATS_SERVER:-}" ] && [ -x "${FLOTILLA_NATS_SERVER}" ]; then
  say "nats-server: $FLOTILLA_NATS_SERVER"
elif command -v nats-server >/dev/null 2>&1; then
  say "nats-server: $(command -v nats-server)"
elif [ -x "$HOME/.cache/flotilla/bin/nats-server" ]; then
  say "nats-server: $HOME/.cache/flotilla/bin/nats-server"
elif [ -x /usr/sbin/nats-server ] || [ -x /usr/local/sbin/nats-server ]; then
  # Debian installs it in /usr/sbin, often not on a user's PATH; the code looks there too.
  say "nats-server: $(ls /usr/sbin/nats-server /usr/local/sbin/nats-server 2>/dev/null | head -1)"
else
  apt_install nats-server
  say "nats-server: $(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || echo '?')"
fi

# 2. PostgreSQL 15 server binaries, for benchmarks only
if [ "$bench" -eq 1 ]; then
  if { command -v pg_ctl >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; } ||
     { [ -x /usr/lib/postgresql/15/bin/pg_ctl ] && [ -x /usr/lib/postgresql/15/bin/postgres ]; }; then
    say "postgresql: $(command -v pg_ctl || echo /usr/lib/postgresql/15/bin/pg_ctl)"
  else
    apt_install postgresql-15
  fi
fi

# 3. node_modules: npm ci only when missing or older than the lock file
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
else
  say "dependencies up to date"
fi

# 4. build: dist/apps/<app>/src/main.js runs with plain node
say "building (npm run build)"
npm run build --silent
say "done"
