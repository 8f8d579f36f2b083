# Two commands do everything from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

export PYTHONPATH := $(CURDIR)

.PHONY: install system-deps demo docs test test-fast test-clock lint format verify-ledger bench-ledger bench-pins bench-ussd bench-loans bench-close-day bench-outbox bench-accrual phone clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## demo: install, migrate a SQLite file, seed a demo SACCO and serve it on 127.0.0.1:$(PORT)
## (its Africa's Talking and Daraja stand-ins on PORT+701 and PORT+702: tools/demo.py)
demo: install
	@mkdir -p var
	@SACCO_ENV=demo $(BIN)/python manage.py migrate
	@SACCO_ENV=demo $(BIN)/python manage.py seed-demo
	@SACCO_ENV=demo $(BIN)/python manage.py verify-ledger
	@echo "  Sign in to the staff API as a demo staff member, e.g.:"
	@echo "    curl -X POST http://127.0.0.1:$(PORT)/api/v1/auth/login -H 'Content-Type: application/json' -d '{\"username\": \"teller\", \"password\": \"mango-market-2026\"}'"
	@echo "  SACCO_ENV=demo $(BIN)/python manage.py verify-ledger   (or trial-balance)"
	@SACCO_ENV=demo $(BIN)/python -m tools.demo --port $(PORT)

## system-deps: the Debian packages the suite drives, installed when missing (as root, or
## with sudo): chromium + chromium-driver for the simulator's browser test, nginx-light to
## run deploy/nginx.conf for real, systemd for systemd-analyze (the units' checks),
## prometheus for promtool (deploy/prometheus/alerts.yml; the server it ships is not started).
## Nothing is downloaded from anywhere but Debian's archive.
SYSTEM_PACKAGES := chromium chromium-driver nginx-light systemd
# Installed without their recommends (prometheus would bring the node exporter).
LEAN_PACKAGES := prometheus
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	lean=$$(for p in $(LEAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing$$lean" ]; then \
	  echo "installing Debian packages:" $$missing $$lean; \
	  $(SUDO) apt-get update -qq || exit 1; \
	  if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null || exit 1; fi; \
	  if [ -n "$$lean" ]; then DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$lean >/dev/null || exit 1; fi; \
	fi

## docs: build the documentation (mkdocs.yml, docs/) into var/site; strict: a broken link,
## a missing anchor or a page left out of the nav fails it. README.md is outside the site:
## its links into docs/ are checked here (the file must exist).
# NO_MKDOCS_2_WARNING: Material prints an end-of-life banner on every build (not a build warning).
docs: install
	@for target in $$(grep -o '](docs/[^)#]*' README.md | cut -c3-); do \
	  test -f "$$target" || { echo "README.md links to $$target, which does not exist"; exit 1; }; \
	done
	@NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir var/site

## test: install, lint, the docs build, then the whole suite against the real PostgreSQL and
## Redis (the CI gate)
# The suite waits more than it computes (servers starting, callbacks, real-time claims), so
# four xdist workers keep both cores busy (a run at three used 23 CPU-minutes in 16 wall
# minutes); each worker has its own PostgreSQL database and Redis database
# (tests/settings.py), and a file's tests stay on one worker. The slowest tests are listed.
TEST_WORKERS ?= 4
test: install system-deps lint docs
	@$(BIN)/python -m tests.preflight
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

## test-fast: the daily loop: unit + integration without the slow tests, on 2 xdist workers
## (each with its own PostgreSQL database sacco_test_gwN and Redis database)
test-fast: install
	@$(BIN)/python -m tests.preflight
	@$(BIN)/python -m pytest -q -n 2 -m "not slow" tests/unit tests/integration

## test-clock: the whole suite with the clock moved in every Python process it starts
## (tests/clockshift.py, time-machine): CLOCK="+365d" (default), or an instant such as
## CLOCK="@2028-02-29T20:59:00Z" (23:59 in Nairobi on a leap day). Proves no test compares
## a fixed date with the real clock.
CLOCK ?= +365d
SITE = $(shell $(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
test-clock: install
	@$(BIN)/python -m tests.preflight
	@cp tests/clockshift.py $(SITE)/sacco_test_clock.py
	@echo 'import sacco_test_clock; sacco_test_clock.start()' > $(SITE)/sacco_test_clock.pth
	@echo "clock: $(CLOCK)"
	@SACCO_TEST_CLOCK="$(CLOCK)" $(BIN)/python -m pytest -q -W ignore::pytest.PytestAssertRewriteWarning; \
	  status=$$?; rm -f $(SITE)/sacco_test_clock.pth $(SITE)/sacco_test_clock.py; exit $$status

lint: install
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy .
	@$(BIN)/lint-imports --no-cache

format: install
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

verify-ledger: install
	@$(BIN)/python manage.py verify-ledger

bench-ledger: install
	@$(BIN)/python bench/ledger.py

bench-pins: install
	@$(BIN)/python bench/pins.py

## bench-ussd: gunicorn (production settings, PostgreSQL + Redis) under 50 simulated members
bench-ussd: install
	@$(BIN)/python bench/ussd.py

## bench-loans: the USSD loans menus (apply, my limit, my loans) beside the savings menu, paced
bench-loans: install
	@$(BIN)/python bench/loans.py

## bench-close-day: close of day over 100,000 seeded loans (one day, a 30-day catch-up) beside
## a naive per-loan loop, and loan detail reads at month 1 and 24 (LOANS=N for a quick run)
LOANS ?= 100000
bench-close-day: install
	@$(BIN)/python bench/close_day.py --loans $(LOANS)

## bench-accrual: savings interest accrual over 1,000,000 seeded accounts beside a naive
## per-account loop over a sample, extrapolated (ACCOUNTS=N for a quick run)
ACCOUNTS ?= 1000000
bench-accrual: install
	@$(BIN)/python bench/accrual.py --accounts $(ACCOUNTS)

## phone: a terminal feature phone dialling the running service (PHONE=+2547..., URL=..., TOKEN=...)
PHONE ?= +254712000001
URL   ?= http://127.0.0.1:$(PORT)
TOKEN ?=
phone: install
	@$(BIN)/python -m tools.phone --url $(URL) --phone $(PHONE) --path '/ussd$(if $(TOKEN),?token=$(TOKEN),)'

bench-outbox: install
	@$(BIN)/python bench/outbox.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
