#!/usr/bin/env bash
# Prints the path of a redis-server binary (the bench's Redis peer starts its
# own on a free port), installing Debian's package when it is missing and this
# shell may use apt-get as root. Fails with instructions otherwise. Honours
# REDIS_SERVER_BIN when it points at an executable.
set -euo pipefail

find_redis() {
  if [[ -n "${REDIS_SERVER_BIN:-}" && -x "${REDIS_SERVER_BIN}" ]]; then echo "${REDIS_SERVER_BIN}"; return 0; fi
  if command -v redis-server >/dev/null 2>&1; then command -v redis-server; return 0; fi
  for candidate in /usr/bin/redis-server /usr/sbin/redis-server /usr/local/bin/redis-server; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  return 1
}

if find_redis; then exit 0; fi

if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "redis-server not found: installing the Debian package redis-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq redis-server >&2
  if find_redis; then exit 0; fi
fi

cat >&2 <<'MSG'
error: redis-server is required (the Redis peer of make bench) but was not found.
  Debian/Ubuntu:  sudo apt-get install redis-server
  Or set REDIS_SERVER_BIN=/path/to/redis-server
MSG
exit 1
