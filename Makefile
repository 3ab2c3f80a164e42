# sendbrake — the README's commands. Everything the tests need is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench docs clean debian-packages promtool

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

## Start the gateway on its embedded defaults (SMTP 127.0.0.1:2525, HTTP 127.0.0.1:8080).
run: $(STAMP)
	$(BIN)/sendbrake serve

## Install what the tests need, then run them in two passes side by side: everything on the
## SQLite spool (on two pytest-xdist workers), and the gateway's end-to-end and API tests
## once more on PostgreSQL (127.0.0.1:5432, database `test`, or SENDBRAKE_TEST_POSTGRES),
## leaving out those that choose their spool themselves (one process). Half of the tests'
## time is waiting (subprocesses starting, slow fake providers, leases running out), so
## three runners keep two CPUs busy; more made the heaviest tests time out. The PostgreSQL
## pass writes to var/test-postgres.log, printed once both are done; either failing fails
## make. Bytecode is cached (PYTHONDONTWRITEBYTECODE emptied): each worker and each
## `sendbrake` subprocess the tests start would compile the same sources again.
## About six and a half minutes on two CPUs (379 s measured, other test runs keeping the load
## at 2 to 4; one after the other, serially, the passes took 9 + 5 minutes at a load of 5 to 8).
TEST_POSTGRES_LOG := var/test-postgres.log

test: $(STAMP) debian-packages
	@mkdir -p $(dir $(TEST_POSTGRES_LOG))
	@export PYTHONDONTWRITEBYTECODE=; \
	SENDBRAKE_TEST_SPOOL=postgres $(BIN)/pytest -q -m "not own_spool" tests/e2e tests/ops \
	  >$(TEST_POSTGRES_LOG) 2>&1 & postgres=$$!; \
	trap 'kill $$postgres 2>/dev/null' INT TERM; \
	echo "PostgreSQL pass running (pid $$postgres, output in $(TEST_POSTGRES_LOG))"; \
	$(BIN)/pytest -q -n 2 --dist worksteal; sqlite=$$?; \
	wait $$postgres; pg=$$?; \
	echo; echo "== PostgreSQL pass: tests/e2e tests/ops -m 'not own_spool'"; \
	cat $(TEST_POSTGRES_LOG); \
	[ $$sqlite -eq 0 ] && [ $$pg -eq 0 ]

## Debian packages the tests need, installed with one apt-get only when a tool is missing:
## promtool and amtool (prometheus, prometheus-alertmanager) check deploy/prometheus/
## (tests/deploy); postfix is the platform's MTA in front of the gateway in
## tests/e2e/test_postfix_front.py, which runs its own private instance, and its postconf
## and postmap check deploy/postfix/; systemd-analyze verifies deploy/systemd/; chromium is
## the browser tests/console drives with Playwright (never a browser Playwright downloads). debconf's
## "No configuration" keeps the install from writing a system mail setup. The postinst
## scripts start daemons where a service manager runs: any daemon the install started
## (none ran before) is stopped again; the tests need only the programs.
DEBIAN_TOOLS := promtool:prometheus amtool:prometheus-alertmanager \
  postfix:postfix postqueue:postfix postconf:postfix postmap:postfix \
  systemd-analyze:systemd chromium:chromium
DAEMONS := prometheus:/usr/bin/prometheus \
  prometheus-alertmanager:/usr/bin/prometheus-alertmanager \
  postfix:/usr/lib/postfix/sbin/master

debian-packages:
	@missing=""; \
	for pair in $(DEBIAN_TOOLS); do \
	  PATH="$$PATH:/usr/sbin" command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	[ -n "$$missing" ] || exit 0; \
	before=""; \
	for pair in $(DAEMONS); do \
	  before="$$before$$(pgrep -f "^$${pair#*:}( |$$)" || true)"; \
	done; \
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  $$(printf '%s\n' $$missing | sort -u) >/dev/null || exit 1; \
	if [ -z "$$before" ]; then \
	  for pair in $(DAEMONS); do \
	    pgrep -f "^$${pair#*:}( |$$)" >/dev/null || continue; \
	    service $${pair%%:*} stop >/dev/null 2>&1 || pkill -f "^$${pair#*:}( |$$)"; \
	  done; \
	fi

## The old name of debian-packages (it installed promtool and amtool only).
promtool: debian-packages

## Lint, format check and strict typing: what CI expects to stay clean.
check: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

## Regenerate docs/settings.md from the code, and the examples of docs/api.md,
## docs/http-sending.md and docs/feedback.md from a test run.
docs: $(STAMP)
	$(BIN)/sendbrake config docs -o docs/settings.md
	SENDBRAKE_UPDATE_DOCS=1 $(BIN)/pytest -q tests/ops/test_api_docs.py tests/e2e/test_esp_docs.py \
		tests/e2e/test_sendgrid_upstream_docs.py tests/e2e/test_feedback_docs.py

## Relay benchmark against a private Postfix and bare aiosmtpd (installs postfix; needs root).
## Extra arguments: make bench BENCH_ARGS="--commit main --runs 1"
bench: $(STAMP)
	$(BIN)/python bench/relay_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
