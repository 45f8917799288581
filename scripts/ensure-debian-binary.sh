#!/usr/bin/env bash
# usage: ensure-debian-binary.sh <binary> <debian-package> <ENV_VAR> <what it is for>
# Prints the path of <binary>, installing Debian's <debian-package> when it is
# missing and this shell may use apt-get as root. Fails with instructions
# otherwise. Honours $<ENV_VAR> when it points at an executable. Nothing the
# package starts is relied on: tests, make up and the bench start their own
# servers on free ports.
set -euo pipefail
binary="$1" package="$2" variable="$3" purpose="$4"

find_binary() {
  local given="${!variable:-}"
  if [[ -n "$given" && -x "$given" ]]; then echo "$given"; return 0; fi
  if command -v "$binary" >/dev/null 2>&1; then command -v "$binary"; return 0; fi
  for candidate in "/usr/sbin/$binary" "/usr/bin/$binary" "/usr/local/bin/$binary"; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  return 1
}

if find_binary; then exit 0; fi

if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "$binary not found: installing the Debian package $package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "$package" >&2
  if find_binary; then exit 0; fi
fi

cat >&2 <<MSG
error: $binary is required ($purpose) but was not found.
  Debian/Ubuntu:  sudo apt-get install $package
  Or set $variable=/path/to/$binary
MSG
exit 1
