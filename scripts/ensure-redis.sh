#!/usr/bin/env bash
# Prints the path of a redis-server binary (make bench's Redis peers start their
# own on free ports), installing Debian's package when it is missing (as root).
# Honours REDIS_SERVER_BIN.
exec "$(dirname "$0")/ensure-debian-binary.sh" redis-server redis-server REDIS_SERVER_BIN "the Redis peers of make bench and their tests"
