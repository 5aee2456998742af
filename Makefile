PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit integration lint proto bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@# the dashboard test drives a real headless browser: Debian's chromium (root installs it, as on CI)
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		echo "warning: could not install chromium: the dashboard test will fail until it is installed"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/python -m pytest -q tests

unit: install
	$(BIN)/python -m pytest -q tests/unit

integration: install
	$(BIN)/python -m pytest -q tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy weir state jobmanager taskmanager client

proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=weir/rpc --pyi_out=weir/rpc --grpc_python_out=weir/rpc proto/weir.proto
	sed -i 's/^import weir_pb2 as/from weir.rpc import weir_pb2 as/' weir/rpc/weir_pb2_grpc.py

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info

# ---- bench-peers: weir side by side with PyFlink and Bytewax (benchmarks/peers/); not part of `make test` ----
# Each peer gets its own venv (PyFlink is ~840 MB and runs on the machine's Java 17), made once (stamp files).
PEERS_PYFLINK := .venv-pyflink
PEERS_BYTEWAX := .venv-bytewax

.PHONY: bench-peers
bench-peers: install $(PEERS_PYFLINK)/.installed $(PEERS_BYTEWAX)/.installed
	$(BIN)/python -m benchmarks.peers.run $(PEERS_ARGS)

$(PEERS_PYFLINK)/.installed: benchmarks/peers/requirements-pyflink.txt
	command -v java >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null; }
	test -x $(PEERS_PYFLINK)/bin/python || $(PY) -m venv $(PEERS_PYFLINK)
	$(PEERS_PYFLINK)/bin/pip install -q --upgrade pip
	$(PEERS_PYFLINK)/bin/pip install -q -r benchmarks/peers/requirements-pyflink.txt
	touch $@

$(PEERS_BYTEWAX)/.installed: benchmarks/peers/requirements-bytewax.txt
	test -x $(PEERS_BYTEWAX)/bin/python || $(PY) -m venv $(PEERS_BYTEWAX)
	$(PEERS_BYTEWAX)/bin/pip install -q --upgrade pip
	$(PEERS_BYTEWAX)/bin/pip install -q -r benchmarks/peers/requirements-bytewax.txt
	touch $@
