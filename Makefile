# Carethread: two commands on a fresh machine, `make sandbox` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: sandbox serve test bench venv clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

sandbox: $(STAMP)
	$(BIN)/carethread sandbox

serve: $(STAMP)
	$(BIN)/carethread serve

test: $(STAMP)
	@scripts/install-chromium
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest_hl7v2.py

clean:
	rm -rf $(VENV) .carethread .pytest_cache .hypothesis
