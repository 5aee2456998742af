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
