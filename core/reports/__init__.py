"""Reports (issue 16): read-only views over every domain, rendered as CSV, JSON or XLSX.

The registry (``registry``) is the one entry point: ``REPORTS`` maps a name to a
``ReportSpec``; a module here calls ``register(...)`` at import; ``load_all()`` imports
them all. Nothing in ``core`` imports this package; the edges do. docs/reports/index.md.
"""

from core.reports.registry import (
    REPORTS,
    Column,
    Kind,
    Param,
    Report,
    ReportParams,
    ReportSpec,
    Section,
    get,
    load_all,
    parse_params,
    register,
    report,
    run,
)

__all__ = [
    "REPORTS",
    "Column",
    "Kind",
    "Param",
    "Report",
    "ReportParams",
    "ReportSpec",
    "Section",
    "get",
    "load_all",
    "parse_params",
    "register",
    "report",
    "run",
]
