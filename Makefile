# The two commands a newcomer needs: `make run` (the demo) and `make test` (every test).
CARGO ?= cargo
CONF ?= conf/demo.yaml
SHELL := /bin/bash

.PHONY: setup run build test lint unit doc check-conf fuzz-check fuzz fuzz-libfuzzer fuzz-proptest bench bench-load clean

setup:
	@./scripts/setup.sh

build: setup
	$(CARGO) build --release --bins --features demo

## run: the demo — proxy on 127.0.0.1:6188 in front of demo backends iis1/iis2/iis3
## (CONF=conf/<file>.yaml runs another example against the same backends)
run: build
	CONF=$(CONF) ./scripts/demo.sh

## test: formatting, lints, unit + integration tests, doc tests, the API docs, every conf/ example checked with -t
test: setup lint unit doc check-conf fuzz-check

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --features demo -- -D warnings

unit:
	# The extension tests run examples/tenant_affinity.rs; nextest does not build examples.
	$(CARGO) build --examples
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast; \
	else \
		$(CARGO) test --no-fail-fast; \
	fi
	$(CARGO) test --doc

## doc: the API reference, warnings as errors (every public item documented, no broken link)
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --features demo

## fuzz-check: the cargo fuzz targets still compile against the library (stable `cargo check`;
## running them needs a nightly toolchain: `make fuzz`)
fuzz-check:
	cd fuzz && $(CARGO) fmt -- --check && $(CARGO) check --bins

check-conf:
	$(CARGO) build --bin sticky-proxy
	@for f in conf/*.yaml; do \
		echo "check-conf: $$f"; \
		$${CARGO_TARGET_DIR:-target}/debug/sticky-proxy -t -c $$f || exit 1; \
	done

## fuzz: 10 minutes per target with cargo fuzz (libFuzzer) where a nightly toolchain exists,
## else the proptest campaign over tests/properties.rs (FUZZ_ENGINE=libfuzzer|proptest forces one;
## FUZZ_SECONDS, FUZZ_TARGETS; see scripts/fuzz.sh, docs/testing.md (Fuzzing)). Not part of `make test`.
fuzz: setup
	nice -n 10 ./scripts/fuzz.sh

## fuzz-libfuzzer: the cargo fuzz targets in fuzz/ (needs nightly; installs cargo-fuzz)
fuzz-libfuzzer: setup
	FUZZ_ENGINE=libfuzzer nice -n 10 ./scripts/fuzz.sh

## fuzz-proptest: the proptest campaign (FUZZ_BATCH, FUZZ_RELEASE=1 too; scripts/fuzz-proptest.sh)
fuzz-proptest: setup
	FUZZ_ENGINE=proptest nice -n 10 ./scripts/fuzz.sh

## bench: criterion micro-benchmarks
bench: setup
	$(CARGO) bench --bench hot_path

## bench-load: side-by-side load benchmark against HAProxy and NGINX (see benches/README.md)
bench-load: setup
	./benches/load/run.sh

clean:
	$(CARGO) clean
