"""``apelier-worker api``: the HTTP API the app's ``AI_ENGINE_URL`` points at (``worker/api/``).

A process of its own, beside the daemon (never inside it): it loads no model and imports no torch, only
queues rows and reads them back, so it starts in a fraction of a second and can run on any box that
reaches the database. It refuses to start without a way to authenticate callers (``WORKER_API_KEY``,
``SUPABASE_JWT_SECRET`` or both) and on a database older than this worker's schema.
"""

from __future__ import annotations

from worker.errors import ConfigError, WorkerError
from worker.service import logs, preflight
from worker.service.config import Settings, redact_url

log = logs.get("api")


def run(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT (uvicorn finishes the requests in flight, then returns)."""
    if not settings.api_key and not settings.supabase_jwt_secret:
        raise ConfigError(
            "apelier-worker api lets nobody in without WORKER_API_KEY (the app's server) or "
            "SUPABASE_JWT_SECRET (signed-in users); set one or both (docs/app.md)"
        )
    try:
        import uvicorn  # noqa: PLC0415 - the optional [api] extra: without it only this command fails

        from worker.api.app import create_app  # noqa: PLC0415 - FastAPI, from the same extra
    except ImportError as exc:
        raise WorkerError(
            f"apelier-worker api needs the 'api' extra ({exc.name} is missing): pip install '.[api]'"
        ) from None
    url = preflight.database(settings, schema="current")  # reachable, with a schema it runs on: else one line
    host = host or settings.api_host
    port = port or settings.api_port
    log.info(
        "api_starting",
        host=host,
        port=port,
        database=redact_url(url),
        auth=[name for name, on in (("key", settings.api_key), ("user_token", settings.supabase_jwt_secret)) if on],
    )
    uvicorn.run(
        create_app(url, settings),
        host=host,
        port=port,
        log_config=None,  # uvicorn's warnings and errors go through the worker's logging
        access_log=False,  # a path may hold the key; worker/api/app.py logs each request's route instead
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0
