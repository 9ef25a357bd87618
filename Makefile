# One source of truth for what CI and developers run.  `make test` and `make run` each set up
# .venv from scratch on a fresh machine; nothing else needs to be installed first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CSRC   := $(wildcard proofs/csrc/*.c proofs/csrc/*.h)

.PHONY: all run demo test bench lint fmt clean

all: test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

# Installs the project (editable) with its test and dev extras; re-runs when the build inputs change.
$(STAMP): $(VENV)/bin/python pyproject.toml setup.py
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Rebuild the C extension in place whenever a C source changes.
.stamp-native: $(STAMP) $(CSRC)
	$(PY) setup.py --quiet build_ext --inplace
	touch .stamp-native

# A 6-provider devnet in .devnet/ (reused across runs); Ctrl-C stops every provider.
run: .stamp-native
	$(PY) -m cli.storaged_cmd devnet --providers 6 --dir .devnet

demo: .stamp-native
	$(PY) -m cli.demo

test: .stamp-native
	$(PY) -m pytest

bench: .stamp-native
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: .stamp-native
	$(PY) -m ruff check storaged cli proofs tests bench
	$(PY) -m mypy

fmt: $(STAMP)
	$(PY) -m ruff format storaged cli proofs tests bench

clean:
	rm -rf $(VENV) build .stamp-native proofs/*.so *.egg-info
