"""Close of day over a large loan book: the set-based run, timed, beside a naive per-loan loop.

    .venv/bin/python bench/close_day.py [--loans 100000] [--sample 2000] [--reads 200]
    (or: make bench-close-day)

What it does, in one run (issue 13, "Show"; docs/benchmarks.md, "Close of day"):

1. Re-creates PostgreSQL database ``sacco_bench_close_day`` (``BENCH_CLOSE_DAY_DATABASE_URL``;
   it is dropped: never point it at real data), migrates it and creates two of the demo's
   loan products (``manage.DEMO_PRODUCTS``: development and emergency loans) through
   ``core/``.
2. Seeds ``--loans`` loans in mixed states, **set-based**: one ``INSERT … SELECT`` per table
   over ``generate_series`` (members, their three accounts, applications, loans, their ledger
   accounts, instalments, the disbursement and repayment entries and postings, repayments).
   The schedules are ``core.loans.schedule.build_schedule``'s, computed once per (product,
   amount, term, disbursement date) and joined in; the ledger is what
   ``core.loans.disbursement`` and ``core.loans.repayments`` post (same accounts, legs, keys
   and fingerprints; running balances and account balances computed in SQL), so
   ``verify-ledger`` passes on the seeded book. Loans are 3 days to 24 months old; about
   60 % pay on time (those whose term has ended are closed), 12 % missed the latest
   instalment, 10 % paid it in part, 10 % missed 2-6, 8 % stopped paying or never paid.
3. Runs close of day with the real ``workers.close_day.run_close_day`` and an injected clock:
   the **opening** run (the book was never closed: every loan gets its state row and its
   accrual since disbursement), then **one day** and a **30-day catch-up**, each timed, with
   the cost per loan.
4. The **baseline**, in the same run and on the same data: the day after the opening run,
   closed by a naive Python loop over a sample of ``--sample`` active loans (load the loan,
   its instalments, its account and its state row; compute accrual, arrears, category and
   provision with the pure functions of ``core.loans.accrual`` and
   ``core.risk.classification``; update the row), in one transaction rolled back afterwards,
   extrapolated to the book; then the real run of that day, and a check that both agree,
   loan by loan, on the sample.
5. Loan detail read time (the staff API's ``core.loans.queries.get_loan`` and the USSD "My
   loans" query ``core.loans.views.member_loans``) for a loan at month 1 and one at month 24
   of the same product and term, median of ``--reads`` reads each.
6. ``verify-ledger``. Aims (printed, not asserted): one day <= 60 s; read time independent
   of the loan's age.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select, text  # noqa: E402  (the path above first)

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from core.kernel.deps import CoreDeps
    from workers.close_day import CloseDayReport

BENCH_DB = os.environ.get(
    "BENCH_CLOSE_DAY_DATABASE_URL",
    "postgresql+psycopg2://postgres@127.0.0.1:5432/sacco_bench_close_day",
)
AIM_DAY_S = 60.0
CATCH_UP_DAYS = 30
# The products (manage.DEMO_PRODUCTS codes) and, per product, the amounts (KES) and terms
# (months) the seeded loans take.
MIX: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "DEV": ((50_000, 120_000, 300_000), (12, 24, 36)),
    "EMG": ((10_000, 40_000), (6, 12)),
}
AGES_MONTHS = 24  # loans are 3 days to 24 months old on the opening date
OFFSETS = (3, 10, 17, 24)  # days into each month of age: 96 disbursement dates
READ_TERM = ("DEV", 36)  # the product and term of the two loans whose detail is read


def at(day: date) -> datetime:
    """09:00 UTC (noon in Nairobi) on ``day``: the moment the bench's clock reads."""
    return datetime.combine(day, clock_time(9), tzinfo=UTC)


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = at(day)
    return dataclasses.replace(deps, now=lambda: moment)


def bench_deps() -> CoreDeps:
    """Core's dependencies with fresh secrets (nothing here reads a PIN or an ID)."""
    from cryptography.fernet import Fernet

    from core.kernel.deps import CoreDeps
    from core.kernel.pins import PinHasher
    from core.kernel.security import PiiVault

    return CoreDeps(
        pins=PinHasher(secrets.token_bytes(32)),
        vault=PiiVault([Fernet.generate_key()], secrets.token_bytes(32)),
    )


@dataclass
class Book:
    """The seeded book: where it lives and the dates the bench closes."""

    engine: Engine
    factory: sessionmaker[Session]
    deps: CoreDeps
    opening: date  # the first date closed (the book's history ends the day before)
    loans: int
    active: int
    closed: int
    young_loan: int  # month 1, READ_TERM, paying on time
    old_loan: int  # month 24, READ_TERM, paying on time
    seconds: float  # the seed's time

    def dispose(self) -> None:
        self.engine.dispose()


# --------------------------------------------------------------------------- the seed


def create_products(factory: sessionmaker[Session], deps: CoreDeps) -> dict[str, int]:
    """The products of ``MIX``, created as the demo creates them; their version ids."""
    from core.kernel.permissions import SYSTEM
    from core.loans import products
    from db.session import unit_of_work
    from manage import DEMO_PRODUCTS

    versions: dict[str, int] = {}
    with unit_of_work(factory) as session:
        for definition in DEMO_PRODUCTS:
            if definition["code"] not in MIX:
                continue
            raw = {**products.DEFAULTS, **definition}
            code = str(raw.pop("code"))
            products.create_product(session, deps, SYSTEM, code, products.parse_terms(raw))
            versions[code] = session.execute(
                text(
                    "SELECT v.id FROM loan_product_versions v JOIN loan_products p "
                    "ON p.id = v.product_id AND v.version = p.current_version WHERE p.code = :c"
                ),
                {"c": code},
            ).scalar_one()
    return versions


def combos(opening: date, versions: dict[str, int]) -> list[tuple[str, int, int, date]]:
    """Every (product, amount, term, disbursement date) a seeded loan may take."""
    out: list[tuple[str, int, int, date]] = []
    for month in range(1, AGES_MONTHS + 1):
        for offset in OFFSETS:
            disbursed_on = opening - timedelta(days=30 * (month - 1) + offset)
            for code, (amounts, terms) in MIX.items():
                out.extend(
                    (code, kes * 100, term, disbursed_on) for kes in amounts for term in terms
                )
    return out


def schedules(
    session: Session, versions: dict[str, int], wanted: list[tuple[int, tuple[str, int, int, date]]]
) -> None:
    """Temporary tables ``bench_combos`` and ``bench_rows``: each combination's schedule as
    ``core.loans.schedule`` builds it (a loan joins its combination's rows)."""
    from core.loans.schedule import build_schedule
    from core.loans.terms import version_terms

    names = ("cid", "ver", "amt", "term", "disb", "fee", "sfee", "inst", "total", "apr")
    cols: dict[str, list[Any]] = {k: [] for k in names}
    rows: dict[str, list[Any]] = {k: [] for k in ("cid", "num", "due", "p", "i", "f")}
    for cid, (code, amount, term, disbursed_on) in wanted:
        terms = version_terms(session, versions[code])
        schedule = build_schedule(terms.schedule_terms(amount, term, disbursed_on))
        for key, value in zip(
            cols,
            (cid, versions[code], amount, term, disbursed_on, schedule.terms.deducted_fee_cents,
             schedule.terms.scheduled_fee_cents, schedule.instalments[0].total_cents,
             sum(i.total_cents for i in schedule.instalments), round(schedule.apr, 4)),
            strict=True,
        ):  # fmt: skip
            cols[key].append(value)
        for i in schedule.instalments:
            for key, value in zip(
                rows, (cid, i.number, i.due_on, i.principal_cents, i.interest_cents, i.fee_cents),
                strict=True,
            ):  # fmt: skip
                rows[key].append(value)
    session.execute(
        text(
            "CREATE TEMP TABLE bench_combos ON COMMIT DROP AS SELECT * FROM unnest("
            "CAST(:cid AS int[]), CAST(:ver AS bigint[]), CAST(:amt AS bigint[]),"
            " CAST(:term AS int[]), CAST(:disb AS date[]), CAST(:fee AS bigint[]),"
            " CAST(:sfee AS bigint[]), CAST(:inst AS bigint[]), CAST(:total AS bigint[]),"
            " CAST(:apr AS numeric[])) AS c(cid, ver, amt, term, disb, fee, sfee, inst, total, apr)"
        ),
        cols,
    )
    session.execute(
        text(
            "CREATE TEMP TABLE bench_rows ON COMMIT DROP AS SELECT * FROM unnest("
            "CAST(:cid AS int[]), CAST(:num AS int[]), CAST(:due AS date[]),"
            " CAST(:p AS bigint[]), CAST(:i AS bigint[]), CAST(:f AS bigint[]))"
            " AS r(cid, num, due, p, i, f)"
        ),
        rows,
    )
    session.execute(text("CREATE INDEX ON bench_rows (cid, num)"))


# A loan's behaviour (by a hash of its number, 0-99): on time (those whose term has ended
# are closed), missed the latest instalment, paid it in part, missed the latest 2-6,
# stopped after the first, never paid. ``full``: instalments paid in full (the first ones);
# ``part``: the instalment paid in part (interest first, then principal: the products'
# allocation order), 0 if none. ``due``: instalments due on or before the last seeded day.
_LOANS = """
CREATE TEMP TABLE bench_loans ON COMMIT DROP AS
WITH base AS (
  SELECT g AS n, ((g - 1) * 7919) % :ncombos + 1 AS cid, (hashint4(g) & 2147483647) % 100 AS b
  FROM generate_series(1, :n) g
), due AS (
  SELECT b.*, (SELECT count(*) FROM bench_rows r WHERE r.cid = b.cid AND r.due <= :last)
    AS due, c.term
  FROM base b JOIN bench_combos c ON c.cid = b.cid
)
SELECT n, cid, term, due,
  CASE WHEN b < 60 THEN due
       WHEN b < 82 THEN GREATEST(due - 1, 0)
       WHEN b < 92 THEN GREATEST(due - 2 - n % 5, 0)
       WHEN b < 98 THEN LEAST(due, 1)
       ELSE 0 END AS full,
  CASE WHEN b >= 72 AND b < 82 AND due >= 1 THEN due ELSE 0 END AS part,
  (b < 60 AND due = term) AS closed
FROM due
"""

# Members (one per loan), active, each with savings, deposits and share capital accounts
# (core.members.registration); ``:nums`` are their member numbers (a Damm check digit).
_MEMBERS = """
INSERT INTO members (id, member_number, full_name, msisdn, national_id_ciphertext,
  national_id_index, status, language, consent_at, consent_version, pin_failed_count,
  pin_lockouts, pin_blocked, pin_reset_attempts, created_at, updated_at)
SELECT n, num, 'Bench Member ' || n, '+2547' || lpad(n::text, 8, '0'), :cipher,
  encode(sha256(convert_to('bench-id-' || n, 'UTF8')), 'hex'), 'active',
  CASE WHEN n % 4 = 0 THEN 'sw' ELSE 'en' END, :joined, :consent, 0, 0, false, 0,
  :joined, :joined
FROM unnest(CAST(:nums AS text[])) WITH ORDINALITY AS m(num, n)
"""

# Account ids: :abase + 4n + (0 savings, 1 deposits, 2 shares, 3 the loan).
_ACCOUNTS = """
INSERT INTO accounts (id, code, name, type, normal_side, purpose, no_overdraft, is_hot,
  member_id, balance_cents, held_cents, created_at)
SELECT :abase + 4 * m.id + k.k,
  CASE WHEN k.k < 3 THEN k.prefix || '-' || m.member_number
       ELSE '1100-' || m.member_number || '-' || l.ref END,
  CASE WHEN k.k < 3 THEN k.label || ' ' || m.member_number
       ELSE 'Loan ' || l.ref || ' ' || m.member_number END,
  k.type, k.side, k.purpose, true, false, m.id, 0, 0,
  CASE WHEN k.k < 3 THEN m.created_at ELSE (c.disb + time '09:00') AT TIME ZONE 'UTC' END
FROM members m
JOIN bench_loans b ON b.n = m.id JOIN bench_combos c ON c.cid = b.cid
CROSS JOIN LATERAL (SELECT 'L' || lpad(upper(to_hex(m.id)), 7, '0') AS ref) l
CROSS JOIN (VALUES (0, '2000', 'Savings', 'liability', 'C', 'savings'),
                   (1, '2100', 'Deposits', 'liability', 'C', 'deposits'),
                   (2, '3000', 'Share capital', 'equity', 'C', 'shares'),
                   (3, NULL, NULL, 'asset', 'D', 'loan')) AS k(k, prefix, label, type, side, purpose)
"""

_APPLICATIONS = """
INSERT INTO loan_applications (id, reference, member_id, product_version_id, amount_cents,
  term, status, channel, disburse_to, idempotency_key, limit_cents, reasons,
  required_cover_cents, own_cover_cents, guarantor_cover_cents, instalment_cents,
  total_repayable_cents, deducted_fee_cents, scheduled_fee_cents, apr, decision_note,
  created_at, decided_at, updated_at)
SELECT b.n, 'L' || lpad(upper(to_hex(b.n)), 7, '0'), b.n, c.ver, c.amt, c.term,
  'disbursed', 'staff', 'savings', 'bench-' || b.n, c.amt, '', c.amt, c.amt, 0, c.inst,
  c.total, c.fee, c.sfee, c.apr, '', t.made - interval '1 day', t.made, t.made
FROM bench_loans b JOIN bench_combos c ON c.cid = b.cid
CROSS JOIN LATERAL (SELECT (c.disb + time '09:00') AT TIME ZONE 'UTC' AS made) t
"""

# Entry ids: :ebase + 2n (the disbursement), :ebase + 2n + 1 (the repayments, summed).
# Legs as core.loans.disbursement._post_disbursement and core.loans.repayments._post
# post them (M-Pesa as the source; no close had run, so interest paid was income).
_LEGS = """
CREATE TEMP TABLE bench_legs ON COMMIT DROP AS
WITH paid AS (
  SELECT b.n, b.closed, c.disb, c.amt, c.fee,
    COALESCE(SUM(CASE WHEN r.num <= b.full THEN r.p
                      WHEN r.num = b.part THEN (r.p + r.i) / 2 - LEAST(r.i, (r.p + r.i) / 2)
                      ELSE 0 END), 0) AS p,
    COALESCE(SUM(CASE WHEN r.num <= b.full THEN r.i
                      WHEN r.num = b.part THEN LEAST(r.i, (r.p + r.i) / 2) ELSE 0 END), 0) AS i,
    COALESCE(SUM(CASE WHEN r.num <= b.full THEN r.f ELSE 0 END), 0) AS f
  FROM bench_loans b JOIN bench_combos c ON c.cid = b.cid
  LEFT JOIN bench_rows r ON r.cid = b.cid AND (r.num <= b.full OR r.num = b.part)
  GROUP BY b.n, b.closed, c.disb, c.amt, c.fee
)
SELECT :ebase + 2 * n AS entry_id, n, 'loan.disbursement' AS kind, disb AS value_date,
  leg.account_id, leg.amount
FROM paid CROSS JOIN LATERAL (VALUES
  (:abase + 4 * n + 3, amt), (:abase + 4 * n, -(amt - fee)), (:fee_income, -fee)
) AS leg(account_id, amount)
WHERE leg.amount <> 0
UNION ALL
SELECT :ebase + 2 * n + 1, n, 'loan.repayment', :last, leg.account_id, leg.amount
FROM paid CROSS JOIN LATERAL (VALUES
  (:float, p + i + f), (:abase + 4 * n + 3, -p), (:interest_income, -i), (:fee_income, -f)
) AS leg(account_id, amount)
WHERE leg.amount <> 0 AND p + i + f > 0
"""

_ENTRIES = """
INSERT INTO journal_entries (id, idempotency_key, fingerprint, reference, kind, memo,
  created_at, value_date)
SELECT g.entry_id,
  CASE WHEN g.kind = 'loan.disbursement' THEN 'loan.disbursement:' || g.n
       ELSE 'mpesa:receipt:' || 'BX' || lpad(g.n::text, 8, '0') END,
  encode(sha256(convert_to(g.kind || '||' || g.legs, 'UTF8')), 'hex'),
  'S' || lpad(upper(to_hex(g.entry_id)), 9, '0'), g.kind,
  CASE WHEN g.kind = 'loan.disbursement' THEN 'Loan ' || 'L' || lpad(upper(to_hex(g.n)), 7, '0')
       ELSE 'Loan ' || 'L' || lpad(upper(to_hex(g.n)), 7, '0') || ' repayment M-Pesa BX'
            || lpad(g.n::text, 8, '0') END,
  (g.value_date + time '09:00') AT TIME ZONE 'UTC', g.value_date
FROM (SELECT entry_id, n, kind, value_date,
        string_agg(account_id || ':' || amount, '|' ORDER BY account_id) AS legs
      FROM bench_legs GROUP BY entry_id, n, kind, value_date) g
"""

# Postings in entry order; each one's running balance on its account's normal side.
_POSTINGS = """
INSERT INTO postings (entry_id, account_id, amount_cents, balance_after_cents)
SELECT l.entry_id, l.account_id, l.amount,
  a.balance_cents + SUM(CASE WHEN a.normal_side = 'D' THEN l.amount ELSE -l.amount END)
    OVER (PARTITION BY l.account_id ORDER BY l.entry_id, l.account_id)
FROM bench_legs l JOIN accounts a ON a.id = l.account_id
ORDER BY l.entry_id, l.account_id
"""

_BALANCES = """
UPDATE accounts a SET balance_cents = a.balance_cents + s.delta
FROM (SELECT l.account_id, SUM(CASE WHEN a.normal_side = 'D' THEN l.amount ELSE -l.amount END)
        AS delta
      FROM bench_legs l JOIN accounts a ON a.id = l.account_id GROUP BY l.account_id) s
WHERE a.id = s.account_id
"""

_LOANS_ROWS = """
INSERT INTO loans (id, reference, application_id, member_id, product_version_id,
  principal_cents, term, account_id, disbursement_entry_id, deducted_fee_cents, disbursed_on,
  status, created_at, closed_at)
SELECT b.n, 'L' || lpad(upper(to_hex(b.n)), 7, '0'), b.n, b.n, c.ver, c.amt, c.term,
  :abase + 4 * b.n + 3, :ebase + 2 * b.n, c.fee, c.disb,
  CASE WHEN b.closed THEN 'closed' ELSE 'active' END, (c.disb + time '09:00') AT TIME ZONE 'UTC',
  CASE WHEN b.closed THEN (CAST(:last AS date) + time '09:00') AT TIME ZONE 'UTC' END
FROM bench_loans b JOIN bench_combos c ON c.cid = b.cid
"""

_INSTALMENTS = """
INSERT INTO loan_instalments (loan_id, number, due_on, principal_cents, interest_cents,
  fee_cents, paid_principal_cents, paid_interest_cents, paid_fee_cents, waived_interest_cents)
SELECT b.n, r.num, r.due, r.p, r.i, r.f,
  CASE WHEN r.num <= b.full THEN r.p
       WHEN r.num = b.part THEN (r.p + r.i) / 2 - LEAST(r.i, (r.p + r.i) / 2) ELSE 0 END,
  CASE WHEN r.num <= b.full THEN r.i WHEN r.num = b.part THEN LEAST(r.i, (r.p + r.i) / 2)
       ELSE 0 END,
  CASE WHEN r.num <= b.full THEN r.f ELSE 0 END, 0
FROM bench_loans b JOIN bench_rows r ON r.cid = b.cid
ORDER BY b.n, r.num
"""

# One repayment row per loan that paid anything (its history summed), and the state row a
# repayment makes (core.loans.close_of_day.recognise_repayment: interest paid before any
# close is recognised, nothing accrued yet).
_REPAYMENTS = """
INSERT INTO loan_repayments (loan_id, idempotency_key, business_key, source, amount_cents,
  penalty_cents, fee_cents, interest_cents, principal_cents, waived_interest_cents,
  to_savings_cents, balance_after_cents, entry_id, receipt, closed_loan, value_date,
  created_at)
SELECT l.id, e.idempotency_key, 'loan_repayment:' || e.idempotency_key, 'mpesa',
  s.p + s.i + s.f, 0, s.f, s.i, s.p, 0, 0, l.principal_cents - s.p, e.id,
  'BX' || lpad(l.id::text, 8, '0'), l.status = 'closed', e.value_date, e.created_at
FROM loans l JOIN journal_entries e ON e.id = :ebase + 2 * l.id + 1
JOIN (SELECT loan_id, SUM(paid_principal_cents) AS p, SUM(paid_interest_cents) AS i,
        SUM(paid_fee_cents) AS f FROM loan_instalments GROUP BY loan_id) s ON s.loan_id = l.id
"""

_STATES = """
INSERT INTO loan_day_states (loan_id, accrued_interest_cents, days_past_due,
  missed_instalments, arrears_cents, exposure_cents, provision_cents)
SELECT loan_id, interest_cents, 0, 0, 0, 0, 0 FROM loan_repayments
"""


def seed(database_url: str, loans: int, opening: date) -> Book:
    """Re-create the database and seed ``loans`` loans whose history ends the day before
    ``opening`` (see the module)."""
    from bench.ussd import recreate_database
    from core.kernel.identity import member_number_for
    from core.ledger import entries as ledger
    from core.ledger.chart import SystemAccount
    from core.members.registration import CONSENT_VERSION
    from db.session import make_engine, make_session_factory, unit_of_work

    started = time.monotonic()
    recreate_database(database_url, None)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    deps = bench_deps()
    first = opening - timedelta(days=30 * AGES_MONTHS + max(OFFSETS) + 30)
    versions = create_products(factory, on(deps, first))
    every = combos(opening, versions)
    wanted = sorted({((n - 1) * 7919) % len(every) for n in range(1, loans + 1)})  # indexes
    last = opening - timedelta(days=1)
    with unit_of_work(factory) as session:
        schedules(session, versions, [(k + 1, every[k]) for k in wanted])
        params: dict[str, Any] = {
            "n": loans, "ncombos": len(every), "last": last, "joined": at(first),
            "consent": CONSENT_VERSION, "cipher": deps.vault.encrypt("00000000"),
            "fee_income": ledger.account_id_by_code(session, SystemAccount.FEE_INCOME),
            "interest_income": ledger.account_id_by_code(
                session, SystemAccount.LOAN_INTEREST_INCOME
            ),
            "float": ledger.account_id_by_code(session, SystemAccount.MPESA_COLLECTIONS_FLOAT),
        }  # fmt: skip
        params["abase"] = session.execute(
            text("SELECT COALESCE(max(id), 0) FROM accounts")
        ).scalar_one()
        params["ebase"] = session.execute(
            text("SELECT COALESCE(max(id), 0) FROM journal_entries")
        ).scalar_one()
        step(session, "loan plan", _LOANS, params)
        params["nums"] = [member_number_for(n) for n in range(1, loans + 1)]
        step(session, "members", _MEMBERS, params)
        del params["nums"]
        step(session, "accounts", _ACCOUNTS, params)
        step(session, "applications", _APPLICATIONS, params)
        step(session, "ledger legs", _LEGS, params)
        step(session, "journal entries", _ENTRIES, params)
        step(session, "postings", _POSTINGS, params)
        step(session, "balances", _BALANCES, params)
        step(session, "loans", _LOANS_ROWS, params)
        step(session, "instalments", _INSTALMENTS, params)
        step(session, "repayments", _REPAYMENTS, params)
        step(session, "state rows", _STATES, params)
        for table in ("members", "accounts", "journal_entries", "postings", "loan_applications",
                      "loans", "loan_instalments", "loan_repayments"):  # fmt: skip
            session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )
        young, old = (
            session.execute(
                text(
                    "SELECT l.id FROM loans l JOIN bench_loans b ON b.n = l.id "
                    "JOIN loan_product_versions v ON v.id = l.product_version_id "
                    "JOIN loan_products p ON p.id = v.product_id "
                    "WHERE p.code = :code AND l.term = :term AND l.status = 'active' "
                    "AND b.full = b.due AND b.part = 0 AND l.disbursed_on BETWEEN :a AND :b "
                    "ORDER BY l.id LIMIT 1"
                ),
                {"code": READ_TERM[0], "term": READ_TERM[1], "a": a, "b": b},
            ).scalar()
            for a, b in (
                (opening - timedelta(days=30), opening),
                (
                    opening - timedelta(days=30 * AGES_MONTHS + 30),
                    opening - timedelta(days=30 * 23),
                ),
            )
        )
        counts = session.execute(
            text("SELECT count(*) FILTER (WHERE status = 'active'), count(*) FILTER "
                 "(WHERE status = 'closed') FROM loans")
        ).one()  # fmt: skip
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return Book(
        engine, factory, deps, opening, loans, int(counts[0]), int(counts[1]),
        young or 0, old or 0, time.monotonic() - started,
    )  # fmt: skip


def step(session: Session, what: str, sql: str, params: dict[str, Any]) -> None:
    t0 = time.monotonic()
    result = session.execute(text(sql), params)
    rows = getattr(result, "rowcount", -1)
    print(f"  {what:<17} {rows:>10,} rows {time.monotonic() - t0:7.1f} s", flush=True)


# --------------------------------------------------------------------------- the runs


class Stamped:
    """The session factory, noting when each session is opened: ``run_close_day`` opens one
    to find the dates, then one per step (``CLOSE_DAY_STEPS`` a date), so the stamps time
    each date."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.opened: list[float] = []

    def __call__(self) -> Session:
        self.opened.append(time.monotonic())
        return self.factory()

    def per_date(self, dates: int, end: float) -> list[float]:
        """Seconds per date (empty when a step was retried: the stamps no longer line up)."""
        from core.loans.vocabulary import CLOSE_DAY_STEPS

        steps = len(CLOSE_DAY_STEPS)
        starts = self.opened[1::steps]
        if len(self.opened) != 1 + steps * dates:
            return []
        return [b - a for a, b in zip(starts, [*starts[1:], end], strict=True)]


def close_through(book: Book, through: date) -> tuple[float, CloseDayReport, list[float]]:
    """``run_close_day`` up to ``through``, run the morning after: seconds, report, and
    seconds per date."""
    from workers.close_day import run_close_day

    stamped = Stamped(book.factory)
    t0 = time.monotonic()
    report = run_close_day(
        stamped, on(book.deps, through + timedelta(days=1)), through=through,
        lock_engine=book.engine,
    )  # fmt: skip
    end = time.monotonic()
    return end - t0, report, stamped.per_date(len(report.dates), end)


@dataclass(frozen=True)
class Figures:
    accrued_interest_cents: int
    days_past_due: int
    missed_instalments: int
    arrears_cents: int
    category: str
    provision_cents: int


def naive_day(book: Book, day: date, loan_ids: list[int]) -> tuple[float, dict[int, Figures]]:
    """THE BASELINE: ``day`` closed loan by loan in Python (see the module), in one
    transaction that is rolled back; its seconds and what it computed per loan."""
    from core.loans import accrual
    from core.risk.classification import DEFAULT_BANDS, classify, provision_cents
    from db.models import Account
    from db.models_close_day import LoanDayState
    from db.models_loans import Loan, LoanInstalment

    out: dict[int, Figures] = {}
    with book.factory() as session:
        t0 = time.monotonic()
        for loan_id in loan_ids:
            loan = session.get_one(Loan, loan_id)
            rows = list(
                session.scalars(
                    select(LoanInstalment)
                    .where(LoanInstalment.loan_id == loan_id)
                    .order_by(LoanInstalment.number)
                )
            )
            exposure = session.get_one(Account, loan.account_id).balance_cents
            state = session.get_one(LoanDayState, loan_id, with_for_update=True)
            periods = accrual.periods(
                loan.disbursed_on,
                [(i.number, i.due_on, i.interest_cents, i.paid_interest_cents,
                  i.waived_interest_cents) for i in rows],
            )  # fmt: skip
            accrued = accrual.recognised_cents(periods, day)
            late = [
                i for i in rows
                if i.due_on < day and i.due_cents - i.paid_cents - i.waived_interest_cents > 0
            ]  # fmt: skip
            arrears = sum(
                i.due_cents - i.paid_cents - i.waived_interest_cents for i in rows if i.due_on < day
            )
            dpd = (day - min(i.due_on for i in late)).days if late else 0
            band = classify(dpd, len(late), DEFAULT_BANDS)
            figures = Figures(
                accrued, dpd, len(late), arrears, str(band.category),
                provision_cents(exposure, band),
            )  # fmt: skip
            state.accrued_interest_cents = figures.accrued_interest_cents
            state.accrued_through = state.classified_on = day
            state.days_past_due, state.missed_instalments = dpd, len(late)
            state.arrears_cents, state.category = arrears, figures.category
            state.exposure_cents, state.provision_cents = exposure, figures.provision_cents
            session.flush()
            out[loan_id] = figures
        seconds = time.monotonic() - t0
        session.rollback()
    return seconds, out


def run_figures(book: Book, loan_ids: list[int]) -> dict[int, Figures]:
    from db.models_close_day import LoanDayState

    with book.factory() as session:
        rows = session.scalars(select(LoanDayState).where(LoanDayState.loan_id.in_(loan_ids)))
        return {
            s.loan_id: Figures(
                s.accrued_interest_cents, s.days_past_due, s.missed_instalments,
                s.arrears_cents, str(s.category), s.provision_cents,
            )
            for s in rows
        }  # fmt: skip


def sample_ids(book: Book, size: int) -> list[int]:
    """``size`` active loans spread evenly over the book."""
    with book.factory() as session:
        ids = list(
            session.execute(
                text("SELECT id FROM loans WHERE status = 'active' ORDER BY id")
            ).scalars()
        )
    stride = max(1, len(ids) // max(1, size))
    return ids[::stride][:size]


def read_times(book: Book, day: date, reads: int) -> dict[str, tuple[float, float]]:
    """Median ms of the staff loan detail and the USSD My loans read, young and old loan."""
    from core.kernel.permissions import SYSTEM
    from core.loans.queries import get_loan
    from core.loans.views import member_loans
    from db.models_loans import Loan

    deps = on(book.deps, day)
    with book.factory() as session:
        members = {
            loan_id: session.get_one(Loan, loan_id).member_id
            for loan_id in (book.young_loan, book.old_loan)
        }

    def timed(fn: Callable[[Session], object]) -> float:
        with book.factory() as session:
            t0 = time.perf_counter()
            fn(session)
            return (time.perf_counter() - t0) * 1000

    def detail(loan_id: int) -> Callable[[Session], object]:
        return lambda session: get_loan(session, deps, SYSTEM, loan_id)

    def my_loans(member_id: int) -> Callable[[Session], object]:
        return lambda session: member_loans(session, member_id, day)

    samples: dict[str, list[float]] = {}
    for _ in range(reads):  # interleaved, so machine noise hits both alike
        for age, loan_id in (("month 1", book.young_loan), ("month 24", book.old_loan)):
            samples.setdefault(f"detail {age}", []).append(timed(detail(loan_id)))
            samples.setdefault(f"my loans {age}", []).append(timed(my_loans(members[loan_id])))
    return {k: (statistics.median(v), pct99(v)) for k, v in samples.items()}


def pct99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# --------------------------------------------------------------------------- main


@contextmanager
def phase(title: str) -> Iterator[None]:
    print(f"bench: {title} ...", flush=True)
    yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loans", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000, help="loans the naive loop closes")
    parser.add_argument("--reads", type=int, default=200, help="reads of each loan detail")
    args = parser.parse_args(argv)
    loans = max(10, min(args.loans, 1_000_000))
    from core.kernel.calendar import business_date
    from db.base import utcnow

    opening = business_date(utcnow()) - timedelta(days=CATCH_UP_DAYS + 3)
    day, catch_up_to = opening + timedelta(days=1), opening + timedelta(days=1 + CATCH_UP_DAYS)
    print(
        f"bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before start "
        f"(other work on the machine skews every number); database {BENCH_DB}",
        flush=True,
    )
    with phase(f"re-creating the database and seeding {loans:,} loans set-based"):
        book = seed(BENCH_DB, loans, opening)
    try:
        return report(book, day, catch_up_to, args.sample, args.reads)
    finally:
        book.dispose()


def report(book: Book, day: date, catch_up_to: date, sample: int, reads: int) -> int:
    from core.ledger.verify import verify_ledger

    print(
        f"  seeded in {book.seconds:.1f} s: {book.loans:,} loans, {book.active:,} active, "
        f"{book.closed:,} closed; history ends {book.opening - timedelta(days=1)}",
        flush=True,
    )
    with phase(f"opening run: close {book.opening} (the book's first close)"):
        opening_s, _, _ = close_through(book, book.opening)
    ids = sample_ids(book, sample)
    with phase(f"baseline: {day} closed by a naive per-loan Python loop, {len(ids):,} loans"):
        naive_s, naive = naive_day(book, day, ids)
    with phase(f"one day: close {day}"):
        day_s, day_report, _ = close_through(book, day)
    agree = run_figures(book, ids)
    mismatched = [i for i in ids if agree.get(i) != naive[i]]
    # The day after the one closed: the young loan is in its first month, the old one in
    # its 24th, and both have been through two closes.
    with phase(f"reads: loan detail and My loans, {reads} each, on {day + timedelta(days=1)}"):
        reads_ms = (
            read_times(book, day + timedelta(days=1), reads)
            if book.young_loan and book.old_loan
            else {}  # a very small book may have no loan of READ_TERM at month 1 or 24
        )
    with phase(f"catch-up: close {day + timedelta(days=1)} .. {catch_up_to}"):
        catch_s, catch_report, per_date = close_through(book, catch_up_to)
    with book.factory() as session:
        verified = verify_ledger(session)
        autovacuum = session.execute(text("SHOW autovacuum")).scalar_one()
        dead = session.execute(
            text("SELECT (SELECT count(*) FROM loan_day_states), n_dead_tup "
                 "FROM pg_stat_user_tables WHERE relname = 'loan_day_states'")
        ).one()  # fmt: skip
        by_category = session.execute(
            text(
                "SELECT s.category, count(*) FROM loan_day_states s JOIN loans l "
                "ON l.id = s.loan_id WHERE l.status = 'active' GROUP BY 1 ORDER BY 1"
            )
        ).all()
    active = max(1, book.active)
    naive_per_loan = naive_s / max(1, len(ids))
    naive_book = naive_per_loan * active
    print()
    print(f"book: {book.loans:,} loans ({active:,} active), seeded in {book.seconds:.0f} s")
    print(f"  categories after the catch-up: {', '.join(f'{c} {n:,}' for c, n in by_category)}")
    print(f"{'run':<44} {'seconds':>9} {'µs/loan':>9}")
    print(f"{'opening run (' + str(book.opening) + ', first close)':<44} {opening_s:9.1f} "
          f"{opening_s / active * 1e6:9.0f}")  # fmt: skip
    print(f"{'one day (' + str(day) + ')':<44} {day_s:9.1f} {day_s / active * 1e6:9.0f}")
    print(
        f"{f'catch-up, {CATCH_UP_DAYS} days':<44} {catch_s:9.1f} "
        f"{catch_s / active / CATCH_UP_DAYS * 1e6:9.0f}  (per loan-day; "
        f"{catch_s / CATCH_UP_DAYS:.1f} s a day)"
    )
    if per_date:
        print(
            f"  catch-up per date: first {per_date[0]:.1f} s, median "
            f"{statistics.median(per_date):.1f} s, last {per_date[-1]:.1f} s; loan_day_states "
            f"then {dead[0]:,} rows and {dead[1]:,} dead row versions (server autovacuum "
            f"{autovacuum})"
        )
    print(
        f"{'BASELINE naive loop, ' + format(len(ids), ',') + ' loans measured':<44} "
        f"{naive_s:9.1f} {naive_per_loan * 1e6:9.0f}"
    )
    print(
        f"{'BASELINE extrapolated to the book':<44} {naive_book:9.1f} "
        f"{naive_per_loan * 1e6:9.0f}  (x{naive_book / day_s:.1f} the set-based day)"
    )
    print(
        f"  naive loop and run agree on {len(ids) - len(mismatched):,} of {len(ids):,} "
        f"sampled loans" + (f"; differ: {mismatched[:5]}" if mismatched else "")
    )
    if reads_ms:
        print(f"{'read (median / p99 ms)':<44} {'month 1':>14} {'month 24':>14} {'ratio':>6}")
    for what in ("detail", "my loans") if reads_ms else ():
        young, old = reads_ms[f"{what} month 1"], reads_ms[f"{what} month 24"]
        label = "staff loan detail (get_loan)" if what == "detail" else "USSD My loans"
        print(
            f"{label:<44} {young[0]:6.2f} / {young[1]:5.1f} {old[0]:6.2f} / {old[1]:5.1f} "
            f"{old[0] / young[0]:6.2f}"
        )
    ages = (
        f"{reads_ms['detail month 24'][0] / reads_ms['detail month 1'][0]:.2f} (detail)"
        if reads_ms
        else "not measured (no loans to read at this size)"
    )
    print(
        f"aim: one day <= {AIM_DAY_S:.0f} s: {'met' if day_s <= AIM_DAY_S else 'MISSED'} "
        f"({day_s:.1f} s); read time independent of age: month 24 / month 1 = {ages}"
    )
    print(
        f"verify-ledger: {'OK' if verified.ok else verified.problems[:5]} "
        f"({verified.entries:,} entries, {verified.postings:,} postings); "
        f"closed dates {day_report.dates[0]} and {catch_report.dates[0]}..{catch_report.dates[-1]}; "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    return 0 if verified.ok and not mismatched else 1


if __name__ == "__main__":
    raise SystemExit(main())
