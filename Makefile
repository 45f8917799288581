# The two commands of the README: `make up` runs the system, `make test` runs
# every test. Both work on a fresh machine: they install the npm packages and
# nats-server (Debian package, when missing and run as root) themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NPM_STAMP := node_modules/.deps-installed
TAP_FLAGS ?= --disable-coverage --timeout=300 --jobs=2
TESTS ?= 'dist/test/**/*.test.js'

.PHONY: help deps build lint format test up nats simulate chaos bench bench-core bench-engine bench-failover bench-audit bench-gateway bench-latency-floor bench-scale typecheck clean

help:
	@echo "make up          start the local system (NATS with JetStream; engines etc. as they land)"
	@echo "make test        install what is missing, lint, build, run every test"
	@echo "make lint        prettier --check, eslint, and the import rules (dependency-cruiser); make test runs it first"
	@echo "make format      rewrite the files in Prettier's style (prettier --write)"
	@echo "make simulate    the deterministic simulator of a shard's copies: SEEDS=n seeds (default 1000), or SEED=s to replay one"
	@echo "make chaos       the real system on a 3-node NATS cluster under seeded faults, then every checker: SEED=n, DURATION_S=s (default 300), TARGETS=engine,replica,gateway,audit,nats"
	@echo "make bench       the standard benchmark set end to end (<= 10 min): JSON, table, HTML report, docs/BENCHMARKS.md"
	@echo "make bench-core  benchmark the engine core alone (1M and 10M auctions)"
	@echo "make bench-engine  benchmark the engine process over NATS against one publish per bid"
	@echo "make bench-failover  SIGKILL the primary K times under load; measure unavailability"
	@echo "make bench-audit  audit throughput into SQLite and its lag for one shard"
	@echo "make bench-gateway  bids/s and latency through the gateway over WebSocket; update fan-out to 1,000 watchers"
	@echo "make bench-latency-floor  one request at a time, hop by hop (NATS, JetStream, engine, gateway): the p99 at rest"
	@echo "make bench-scale  ten million open auctions through the real processes: bids, memory, snapshots, failover, restart, audit (~30 min)"

$(NPM_STAMP): package.json package-lock.json
	@command -v node >/dev/null || { echo "error: Node.js 20+ is required (apt-get install nodejs npm)"; exit 1; }
	npm install --no-audit --no-fund
	@touch $@

deps: $(NPM_STAMP)

build: deps
	npx tsc -p tsconfig.json

typecheck: deps
	npx tsc -p tsconfig.json --noEmit

# One tool a line, so a failure says which. Formatting (.prettierrc.json), ESLint (eslint.config.js), then the
# import rules (.dependency-cruiser.cjs): the folder rules and no-circular on the sources as written, then
# "gateway and ctl never load better-sqlite3" on the runtime graph (type-only imports erased) of what gateway/
# and ctl/ import. test/lint/import-rules.test.ts runs these two depcruise lines as written here.
lint: deps
	npx prettier --check .
	npx eslint --max-warnings=0 .
	npx depcruise --config .dependency-cruiser.cjs .
	DEPCRUISE_RUNTIME=1 npx depcruise --config .dependency-cruiser.cjs gateway ctl

format: deps
	npx prettier --write .

nats:
	@scripts/ensure-nats.sh >/dev/null

# VERIFY=1: every engine and replica the tests start sweeps all core invariants after each batch.
test: lint build nats
	VERIFY=1 NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" REDIS_SERVER_BIN="$$(scripts/ensure-redis.sh)" npx tap $(TAP_FLAGS) $(TESTS)

up: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" node dist/ctl/up.js

bench: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" REDIS_SERVER_BIN="$$(scripts/ensure-redis.sh)" node --max-old-space-size=4096 dist/bench/run.js

bench-core: build
	node --expose-gc --max-old-space-size=8192 dist/bench/core.js

clean:
	rm -rf dist .tap

bench-engine: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" node dist/bench/engine.js

bench-failover: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" node dist/bench/failover.js

bench-audit: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" node dist/bench/audit.js

bench-gateway: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" node dist/bench/gateway.js

bench-latency-floor: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" node dist/bench/latency-floor.js

bench-scale: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" node --max-old-space-size=4096 dist/bench/scale.js

# The deterministic simulator (testkit/simulator): SEEDS seeds from FROM, or the one SEED; FAULTS=kind,... narrows
# the fault kinds. make test runs 300 seeds (test/simulator/).
SEEDS ?= 1000
FROM ?= 1
# Seeded faults on the real processes (testkit/chaos/): at most 10 minutes with the default 300 s of faults.
chaos: build nats
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" node dist/testkit/chaos/main.js $(if $(SEED),--seed $(SEED)) $(if $(DURATION_S),--duration-s $(DURATION_S)) $(if $(TARGETS),--targets $(TARGETS))

simulate: build
	node dist/testkit/simulator/main.js $(if $(SEED),--seed $(SEED),--seeds $(SEEDS) --from $(FROM)) $(if $(FAULTS),--faults $(FAULTS)) $(if $(JOBS),--jobs $(JOBS))
