"""The alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard
(deploy/grafana/sacco.json) ask only for metrics the app exposes.

Every metric name in every expression is looked up in the app's own /metrics exposition
(every family, with the sample names Prometheus stores: ``_total``, ``_bucket``…), except
the few that come from elsewhere, named in ``EXTERNAL`` with where they come from. The
rules are also checked by ``promtool check rules`` when promtool is installed (Debian's
``prometheus`` package; ``make system-deps``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "sacco.json"

# Metrics the rules read that another program exposes (docs/operators/monitoring.md).
EXTERNAL = {
    "up": "Prometheus itself, for every scrape target",
    "pg_replication_lag_seconds": "postgres_exporter on each replica (pg_replication)",
}
# PromQL words that look like metric names.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "le", "inf", "nan",
}  # fmt: skip
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created", ""),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue  # a function or aggregation, or a keyword
        if (
            re.fullmatch(r"\d+[smhdwy]?", word)
            or match.start()
            and text[match.start() - 1].isdigit()
        ):
            continue
        names.add(word)
    return names


@pytest.fixture
def exposed(client: FlaskClient) -> set[str]:
    """Every sample name the app's /metrics can carry (families without samples too)."""
    text = client.get("/metrics").get_data(as_text=True)
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    assert "sacco_ussd_hops_total" in names and "sacco_outbox_messages" in names
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'sum by (le) (rate(sacco_x_bucket{status=~"5..", a="b"}[5m])) / '
        "on (job) sum(rate(sacco_y_total[5m])) > 0.02 and time() - z > 26 * 3600"
    )
    assert metric_names(expr) == {"sacco_x_bucket", "sacco_y_total", "z"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    for group in document["groups"]:
        assert group["name"] and group["rules"]
    return rules


def test_the_alert_rules_cover_what_operators_asked_for_and_read_only_real_metrics(
    exposed: set[str],
) -> None:
    rules = _rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for wanted in (
        "SaccoOutboxStuck",
        "SaccoCallbacksFailing",
        "SaccoCloseOfDayNotRun",
        "SaccoReplicaLag",
        "SaccoHighErrorRate",
    ):
        assert wanted in names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]
        unknown = metric_names(rule["expr"]) - exposed - set(EXTERNAL)
        assert not unknown, (rule["alert"], unknown)
    by_name = {rule["alert"]: rule for rule in rules}
    assert "> 120" in by_name["SaccoOutboxStuck"]["expr"]  # 2 minutes
    assert "26 * 3600" in by_name["SaccoCloseOfDayNotRun"]["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_the_alerts_fire_on_what_should_fire_them_and_not_before() -> None:
    """deploy/prometheus/alerts_test.yml: the outbox, close-of-day, error-rate, callback and
    replica-lag alerts on made-up series, with their exact labels and summaries."""
    done = subprocess.run(
        ["promtool", "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert {
        "SaccoOutboxStuck",
        "SaccoCloseOfDayNotRun",
        "SaccoHighErrorRate",
        "SaccoCallbacksFailing",
        "SaccoReplicaLag",
    } <= tested


def test_the_dashboard_is_valid_and_reads_only_real_metrics(exposed: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    exprs = []
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    assert len(exprs) >= 20
    read = set().union(*(metric_names(expr) for expr in exprs))
    assert not read - exposed - set(EXTERNAL), read - exposed - set(EXTERNAL)
    # Every metric the app defines is on the dashboard somewhere.
    ours = {name for name in exposed if name.startswith("sacco_") and not name.endswith("_created")}
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in ours}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in read}
    assert families <= shown, families - shown
