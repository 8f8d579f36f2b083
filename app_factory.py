"""The composition root: settings -> runtime -> Flask app with its blueprints."""

from __future__ import annotations

import logging

import redis
from flask import Flask
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from config import Settings, load_settings
from core.actions import register_all
from core.kernel.deps import CoreDeps
from core.kernel.pins import PinHasher
from core.kernel.runtime import Runtime
from core.kernel.security import PiiVault
from db.session import make_engine, make_session_factory


def build_runtime(settings: Settings, *, dispatch: bool = True) -> Runtime:
    """``dispatch``: hand messages queued in a committed session to delivery (RQ with
    Redis, in-process without); operator commands pass False and leave them to the
    workers and the sweeper."""
    register_all()  # every domain's maker-checker actions, before any request
    engine = make_engine(settings.database_url)
    deps = CoreDeps(
        pins=PinHasher(settings.pin_pepper.encode()),
        vault=PiiVault.from_settings(settings),
        sacco_name=settings.sacco_name,
        ussd_code=settings.ussd_service_code,
    )
    client = (
        # One quick retry at most: a USSD hop must answer within the gateway's 15 s,
        # so a Redis outage has to fail fast (the hop then ends politely).
        redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        )
        if settings.redis_url
        else None
    )
    session_factory = make_session_factory(engine)
    dispatcher = None
    if dispatch:
        from workers.dispatch import install_outbox_dispatch

        dispatcher = install_outbox_dispatch(settings, session_factory, client)
    return Runtime(
        engine=engine,
        session_factory=session_factory,
        deps=deps,
        redis=client,
        sacco_name=settings.sacco_name,
        outbox_dispatch=dispatcher,
    )


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
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
    from integrations.mpesa import views as mpesa_views
    from sms import views as sms_views
    from ussd import simulator
    from ussd import views as ussd_views
    from workers.runner import jobs_for

    health.init_app(app)
    v1.init_app(app)
    jobs = jobs_for(app.extensions["sacco"].redis, settings.jobs_queue)
    mpesa_context = mpesa_views.init_app(app, jobs=jobs)
    # Staff PIN resets ask the same SIM-swap checker as M-Pesa withdrawals (api/v1).
    app.extensions["sacco_sim_swap"] = mpesa_context.sim_swap
    # The USSD money menus get the M-Pesa context as plain ports (policy, SIM-swap
    # checker, job queue): channels never import each other.
    ussd_views.init_app(app, money=mpesa_context if settings.mpesa_enabled else None)
    sms_views.init_app(app)
    simulator.init_app(app)  # demo/development only
    return app
