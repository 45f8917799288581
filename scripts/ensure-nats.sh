#!/usr/bin/env bash
# Prints the path of a nats-server binary (with JetStream), installing Debian's
# package when it is missing (as root). Honours NATS_SERVER_BIN.
exec "$(dirname "$0")/ensure-debian-binary.sh" nats-server nats-server NATS_SERVER_BIN "with JetStream: tests, make up and the bench start their own"
