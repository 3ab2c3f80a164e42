# sendbrake — the README's commands. Everything the tests need is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench docs clean promtool deploy-tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

## Start the gateway on its embedded defaults (SMTP 127.0.0.1:2525, HTTP 127.0.0.1:8080).
run: $(STAMP)
	$(BIN)/sendbrake serve

## Install what the tests need, then run them.
test: $(STAMP) promtool deploy-tools
	$(BIN)/pytest -q

## promtool and amtool check and test deploy/prometheus/ (tests/deploy). Debian ships them
## in the `prometheus` and `prometheus-alertmanager` packages, whose postinst scripts also
## start daemons where a service manager runs: any daemon the install started (none ran
## before) is stopped again; the tests need only the two binaries.
promtool:
	@command -v promtool >/dev/null && command -v amtool >/dev/null || { \
	  before=$$(pgrep -f '^/usr/bin/prometheus' || true); \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    prometheus prometheus-alertmanager >/dev/null || exit 1; \
	  if [ -z "$$before" ]; then \
	    for daemon in prometheus prometheus-alertmanager; do \
	      pgrep -f "^/usr/bin/$$daemon( |$$)" >/dev/null || continue; \
	      service $$daemon stop >/dev/null 2>&1 || pkill -f "^/usr/bin/$$daemon( |$$)"; \
	    done; \
	  fi; \
	}

## postconf and postmap check deploy/postfix/, systemd-analyze deploy/systemd/ (tests/deploy).
## Debian's postfix with debconf's "No configuration" writes no main.cf and runs no daemon;
## the tests need only the commands.
deploy-tools:
	@command -v postconf >/dev/null && command -v postmap >/dev/null \
	  && command -v systemd-analyze >/dev/null || { \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix systemd >/dev/null; \
	}

## Lint, format check and strict typing: what CI expects to stay clean.
check: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

## Regenerate docs/settings.md from the code and docs/api.md's examples from a test run.
docs: $(STAMP)
	$(BIN)/sendbrake config docs -o docs/settings.md
	SENDBRAKE_UPDATE_DOCS=1 $(BIN)/pytest -q tests/ops/test_api_docs.py

## Relay benchmark against a private Postfix and bare aiosmtpd (installs postfix; needs root).
## Extra arguments: make bench BENCH_ARGS="--commit main --runs 1"
bench: $(STAMP)
	$(BIN)/python bench/relay_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
