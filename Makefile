# Two commands do everything from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# The seeded demo members (manage.py seed-demo): their M-Pesa payments succeed in the demo.
DEMO_PHONES := +254712000001 +254722000002 +254110000003 +254733000004
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

export PYTHONPATH := $(CURDIR)

.PHONY: install demo test lint format verify-ledger bench-ledger bench-pins bench-ussd bench-outbox phone clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## demo: install, migrate a SQLite file, seed a demo SACCO and serve it on 127.0.0.1:$(PORT)
demo: install
	@mkdir -p var
	@SACCO_ENV=demo $(BIN)/python manage.py migrate
	@SACCO_ENV=demo $(BIN)/python manage.py seed-demo
	@SACCO_ENV=demo $(BIN)/python manage.py verify-ledger
	@echo
	@echo "Demo SACCO on http://127.0.0.1:$(PORT)  (Ctrl-C to stop; data in var/demo.db)"
	@echo "  phone simulator:  http://127.0.0.1:$(PORT)/simulator   (or: make phone PHONE=+254712000001)"
	@echo "  curl http://127.0.0.1:$(PORT)/healthz"
	@echo "  curl http://127.0.0.1:$(PORT)/readyz"
	@echo "  Staff API docs: http://127.0.0.1:$(PORT)/api/v1/docs  (sign in as a demo staff member above:"
	@echo "    curl -X POST http://127.0.0.1:$(PORT)/api/v1/auth/login -H 'Content-Type: application/json' -d '{\"username\": \"teller\", \"password\": \"mango-market-2026\"}')"
	@echo "  SACCO_ENV=demo $(BIN)/python manage.py verify-ledger"
	@echo "  SACCO_ENV=demo $(BIN)/python manage.py trial-balance"
	@echo
	@echo "  SMS sent by the demo: curl 'http://127.0.0.1:8701/_messages?to=%2B254712000001'"
	@echo "  M-Pesa (Daraja stand-in on :8702): dial, 5 Deposit / 6 Withdraw; PIN 4826 for +254712000001"
	@echo "  paybill payment: curl -XPOST localhost:8702/_simulate/c2b -d '{\"amount\":\"250\",\"bill_ref\":\"<member no>\",\"msisdn\":\"+254712000001\"}'"
	@echo
	@# The stand-ins run beside the app for the demo's lifetime: Africa's Talking (SMS and
	@# the SIM-swap check; messages are delivered in-process after each commit, no Redis or
	@# worker needed) and Daraja (STK push, C2B, B2C; it calls the app back on $(PORT)).
	@# The demo members' numbers end 0001-0004, which the Daraja stand-in turns into
	@# failures by default: --outcome makes their payments succeed. Its certificate goes
	@# to var/ for the B2C SecurityCredential (MPESA_CERTIFICATE_PATH).
	@rm -f var/mpesa-standin-cert.pem
	@$(BIN)/python -m integrations.africastalking.standin --port 8701 \
	    --delivery-callback http://127.0.0.1:$(PORT)/sms/delivery > var/at-standin.log 2>&1 & \
	  STANDIN=$$!; \
	  $(BIN)/python -m integrations.mpesa.standin --port 8702 \
	    --callback-base http://127.0.0.1:$(PORT) --certificate-out var/mpesa-standin-cert.pem \
	    $(foreach n,$(DEMO_PHONES),--outcome $(n)=0) > var/mpesa-standin.log 2>&1 & \
	  DARAJA=$$!; trap 'kill $$STANDIN $$DARAJA 2>/dev/null' EXIT INT TERM; \
	  for i in $$(seq 50); do test -s var/mpesa-standin-cert.pem && break; sleep 0.1; done; \
	  export SACCO_ENV=demo PORT=$(PORT) MPESA_CALLBACK_BASE_URL=http://127.0.0.1:$(PORT) \
	    MPESA_CERTIFICATE_PATH=var/mpesa-standin-cert.pem; \
	  $(BIN)/python manage.py mpesa-register-urls || true; \
	  $(BIN)/gunicorn -c deploy/gunicorn.conf.py wsgi:app

## test: install, lint, then the whole suite against the real PostgreSQL and Redis
test: install lint
	@$(BIN)/python -m tests.preflight
	@$(BIN)/python -m pytest

lint: install
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy .

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
