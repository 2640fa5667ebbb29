# Axon's entry points. `make sandbox` runs the local sandbox; `make test` runs every check CI runs.
CARGO ?= cargo

.PHONY: deps sandbox scenarios test deb deb-test lint bench bench-registrar bench-spoa bench-reload bench-codec bench-spoe-agent bench-fleet bench-churn fuzz clean

deps:
	.ci/install-deps

sandbox: deps
	$(CARGO) build --release --workspace --bins
	target/release/axon-sandbox

# The crash experiment: every scenario on a sandbox under load, a markdown table of the results.
scenarios: deps
	$(CARGO) build --release --workspace --bins
	target/release/axon-scenarios

# The HAProxy-facing tests run again against HAProxy 3.0 (built from Debian's upstream tarball)
# and the 3.2 and 3.4 branches (SPOE on its multiplexer; Debian's builds, fetched).
HAPROXY_TESTS := --test spoe --test spoa_sync --test shipped --test lua

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	$(MAKE) deb-test
	.ci/fetch-haproxy 3.0
	AXON_HAPROXY=$(CURDIR)/target/haproxy-3.0/haproxy AXON_HAPROXY_VERSION=3.0. $(CARGO) test $(HAPROXY_TESTS)
	.ci/fetch-haproxy 3.2
	AXON_HAPROXY=$(CURDIR)/target/haproxy-3.2/haproxy AXON_HAPROXY_VERSION=3.2. $(CARGO) test $(HAPROXY_TESTS)
	.ci/fetch-haproxy 3.4
	AXON_HAPROXY=$(CURDIR)/target/haproxy-3.4/haproxy AXON_HAPROXY_VERSION=3.4. $(CARGO) test $(HAPROXY_TESTS)

# Debian packages of both daemons (release builds) in target/debian: binaries, hardened
# systemd units, /etc/axon configurations, the HAProxy files, the `axon` user.
deb: deps
	$(CARGO) build --release -p axon-registrar -p axon-spoa --bins
	$(CARGO) deb -p axon-registrar --no-build -o target/debian
	$(CARGO) deb -p axon-spoa --no-build -o target/debian

# The packages, built from the test build (fast), installed, run from their units' command
# lines against a real ZooKeeper and HAProxy, and purged (this changes the machine: root only).
deb-test:
	rm -rf target/debian-test
	$(CARGO) deb -p axon-registrar --no-build --profile dev -o target/debian-test
	$(CARGO) deb -p axon-spoa --no-build --profile dev -o target/debian-test
	AXON_DEBS=target/debian-test $(CARGO) test --test packages

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: bench-registrar bench-spoa bench-reload bench-codec bench-spoe-agent bench-fleet bench-churn

bench-registrar: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench --bench registrar_cost

bench-spoa: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench --bench spoa_sync

bench-reload: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench --bench reload_vs_runtime

bench-codec:
	$(CARGO) bench --bench spop_codec

bench-spoe-agent: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench --bench spoe

# Discovery at fleet scale: many sessions on a three-node ensemble (about 10 minutes).
bench-fleet: deps
	$(CARGO) bench --bench fleet

# What instance churn costs HAProxy's traffic (about 3 minutes).
bench-churn: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench --bench haproxy_churn

# Fuzz each decoder for a minute (cargo-fuzz; `cargo install cargo-fuzz`), growing the corpus
# that `make test` replays.
fuzz:
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run spop_agent -O -- -max_total_time=60 -max_len=4096
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run znode_record -O -- -max_total_time=60 -max_len=2048
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz cmin spop_agent -O && RUSTC_BOOTSTRAP=1 cargo fuzz cmin znode_record -O

clean:
	$(CARGO) clean
