#!/usr/bin/env bash
# Prints the path of a nats-server binary, installing Debian's package when it
# is missing and this shell may use apt-get as root. Fails with instructions
# otherwise. Honours NATS_SERVER_BIN when it points at an executable.
set -euo pipefail

find_nats() {
  if [[ -n "${NATS_SERVER_BIN:-}" && -x "${NATS_SERVER_BIN}" ]]; then echo "${NATS_SERVER_BIN}"; return 0; fi
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server; return 0; fi
  for candidate in /usr/sbin/nats-server /usr/bin/nats-server /usr/local/bin/nats-server; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  return 1
}

if find_nats; then exit 0; fi

if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "nats-server not found: installing the Debian package nats-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq nats-server >&2
  # The package starts no service we rely on; tests and `make up` start their own.
  if find_nats; then exit 0; fi
fi

cat >&2 <<'MSG'
error: nats-server (with JetStream) is required but was not found.
  Debian/Ubuntu:  sudo apt-get install nats-server
  Or download a release binary and set NATS_SERVER_BIN=/path/to/nats-server
MSG
exit 1
