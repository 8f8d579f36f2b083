"""The bureau a process uses, from its settings (``runtime.build_runtime`` puts it in
``CoreDeps.bureau``): None when ``BUREAU_PROVIDER`` is empty."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.kernel.bureau import BureauAccess, CreditBureau


def build_bureau(settings: Any) -> BureauAccess | None:
    provider = settings.bureau_provider
    if not provider:
        return None
    if not settings.bureau_url:
        raise ValueError("BUREAU_URL is required when BUREAU_PROVIDER is set")
    adapter: CreditBureau
    if provider == "metropol":
        from integrations.bureaus.metropol import MetropolBureau

        adapter = MetropolBureau(
            settings.bureau_url,
            settings.bureau_metropol_public_key,
            settings.bureau_metropol_private_key,
            timeout=settings.bureau_timeout_seconds,
        )
    else:
        from integrations.bureaus.transunion import TransUnionBureau

        adapter = TransUnionBureau(
            settings.bureau_url,
            settings.bureau_transunion_username,
            settings.bureau_transunion_password,
            settings.bureau_transunion_code,
            infinity_code=settings.bureau_transunion_infinity_code,
            timeout=settings.bureau_timeout_seconds,
        )
    return BureauAccess(adapter, timedelta(hours=settings.bureau_cache_hours))
