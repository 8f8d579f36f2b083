"""The composition root: settings -> runtime (``runtime.build_runtime``) -> Flask app with
its blueprints."""

from __future__ import annotations

from flask import Flask

from config import Settings, load_settings
from observability import logs as observability_logs
from observability import metrics as observability_metrics
from runtime import Runtime, build_runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or load_settings()
    # JSON lines, scrubbed (observability/logs.py; docs/operators/monitoring.md).
    observability_logs.configure_logging(
        settings.log_level, json_lines=settings.log_format == "json"
    )
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        SACCO_SETTINGS=settings,
    )
    app.extensions["sacco"] = runtime or build_runtime(settings)
    if settings.trusted_proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    from api import health, v1
    from integrations.bank import views as bank_views
    from integrations.mpesa import views as mpesa_views
    from sms import views as sms_views
    from ussd import simulator
    from ussd import views as ussd_views
    from workers.runner import jobs_for

    observability_logs.init_app(app)  # first: every later hook logs with the request id
    observability_metrics.init_app(app)
    health.init_app(app)
    v1.init_app(app)
    jobs = jobs_for(app.extensions["sacco"].redis, settings.jobs_queue)
    mpesa_context = mpesa_views.init_app(app, jobs=jobs)
    # Staff PIN resets ask the same SIM-swap checker as M-Pesa withdrawals (api/v1).
    app.extensions["sacco_sim_swap"] = mpesa_context.sim_swap
    # Loans disbursed by M-Pesa (api/v1 approvals): the payout limits; none when M-Pesa is
    # switched off, so such an approval is refused rather than sent nowhere.
    app.extensions["sacco_mpesa_policy"] = mpesa_context.policy if settings.mpesa_enabled else None
    # The USSD money menus get the M-Pesa context as plain ports (policy, SIM-swap
    # checker, job queue): channels never import each other.
    ussd_views.init_app(app, money=mpesa_context if settings.mpesa_enabled else None)
    # Loans paid to a bank account, float sweeps, the bank statement (docs/integrations/banks.md).
    bank_views.init_app(app)
    sms_views.init_app(app)
    simulator.init_app(app)  # demo/development only
    return app
