"""The HTTP API as an ASGI application: the old engine's routes (``routes.py``) behind authentication
(``auth.py``), on a bounded pool of database connections, with one error shape and a request log.

Every route answers JSON. A refused request gets ``{"status": "error", "error": …, "message": …}``
(the app shows ``message || error``) and a 4xx/5xx status; nothing was queued. The routes are served
at their paths and, when ``WORKER_API_KEY`` is set, under ``/{WORKER_API_KEY}/`` too (the app
unchanged: docs/app.md). There is no OpenAPI page or any other route. Paths are never logged (one may
hold the key): the log names the route's template.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker import __version__
from worker.api import routes
from worker.api.auth import Authenticator
from worker.errors import RequestError
from worker.queue.database import Database, Queue, as_database
from worker.queue.pool import QueuePool
from worker.service import logs
from worker.service.config import Settings

log = logs.get("api")

POOL_SIZE = 4  # database connections at most; a request waits for one up to POOL_WAIT_S
POOL_WAIT_S = 10.0


@dataclass(frozen=True)
class Context:
    """A request's queue (its own connection while it runs) and the caller's photographer (None: the app's
    server, which may act for any)."""

    queue: Queue
    me: str | None


def context(request: Request, authorization: Annotated[str | None, Header()] = None) -> Iterator[Context]:
    """Who is calling (the path key, else the Authorization header), and a queue for the request."""
    auth: Authenticator = request.app.state.auth
    pool: QueuePool = request.app.state.pool
    key = request.path_params.get("api_key")
    caller = auth.path_key(key) if key is not None else auth.header(authorization)
    request.state.caller = caller.kind
    with pool.borrow() as queue:
        me = None
        if caller.user_id is not None:
            me = queue.app.photographer_for_auth_user(caller.user_id)
            if me is None:
                raise RequestError(403, "no photographer account belongs to this user; finish signing up in the app")
        yield Context(queue, me)


Ctx = Annotated[Context, Depends(context)]
router = APIRouter()


@router.post("/api/process/gallery")
def process_gallery(body: routes.GalleryRequest, c: Ctx) -> dict[str, Any]:
    return routes.process_gallery(c.queue, c.me, body)


@router.get("/api/process/status/{job_id}")
def process_status(job_id: uuid.UUID, c: Ctx) -> dict[str, Any]:
    return routes.process_status(c.queue, c.me, job_id)


@router.post("/api/process/restyle")
def restyle(body: routes.RestyleRequest, c: Ctx) -> dict[str, Any]:
    return routes.restyle_photo(c.queue, c.me, body)


@router.post("/api/style/create")
def create_style(body: routes.CreateStyleRequest, c: Ctx) -> dict[str, Any]:
    return routes.create_style(c.queue, c.me, body)


@router.post("/api/style/create-neural")
def create_neural_style(body: routes.CreateNeuralStyleRequest, c: Ctx) -> dict[str, Any]:
    return routes.create_neural_style(c.queue, c.me, body)


@router.get("/api/style/{profile_id}/status")
def style_status(profile_id: uuid.UUID, c: Ctx) -> dict[str, Any]:
    return routes.style_status(c.queue, c.me, profile_id)


@router.post("/api/style/{profile_id}/retrain")
def retrain_style(profile_id: uuid.UUID, c: Ctx) -> dict[str, Any]:
    return routes.retrain_style(c.queue, c.me, profile_id)


def health(request: Request) -> dict[str, Any]:
    """Unauthenticated: 200 while the database answers (a load balancer's or a deploy script's check)."""
    pool: QueuePool = request.app.state.pool
    with pool.borrow() as queue:
        queue.admin.schema_version()
    return {"status": "healthy", "service": "apelier-worker-api", "version": __version__}


def create_app(database: str | Database, settings: Settings) -> FastAPI:
    """The application, over ``database`` (a URL or a :class:`Database`), authenticating with the
    settings' ``WORKER_API_KEY`` and/or ``SUPABASE_JWT_SECRET`` (at least one)."""
    pool = QueuePool(as_database(database), size=POOL_SIZE, worker_id=f"api:{settings.worker_id}", wait_s=POOL_WAIT_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = FastAPI(
        title="apelier-worker api",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.auth = Authenticator(api_key=settings.api_key, jwt_secret=settings.supabase_jwt_secret)
    app.state.pool = pool
    app.include_router(router)
    if settings.api_key:
        app.include_router(router, prefix="/{api_key}")
    app.add_api_route("/health", health, methods=["GET"])
    _install_errors(app)
    app.middleware("http")(_log_request)
    return app


async def _log_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    log.info(
        "api_request",
        method=request.method,
        route=getattr(route, "path", None),  # the template: a path may hold the key
        status=response.status_code,
        caller=getattr(request.state, "caller", None),
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return response


def error_body(message: str) -> dict[str, str]:
    return {"status": "error", "error": message, "message": message}


def _install_errors(app: FastAPI) -> None:
    def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.message), status_code=exc.status, headers=headers)

    def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid')}{more}"), status_code=422)

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    def database_down(request: Request, exc: Exception) -> Response:
        log.warning("api_database_unreachable", error=type(exc).__name__)
        return JSONResponse(error_body("the database is unreachable; try again shortly"), status_code=503)

    def busy(request: Request, exc: Exception) -> Response:
        log.warning("api_pool_exhausted", waited_s=POOL_WAIT_S)
        return JSONResponse(error_body("the API is busy; try again shortly"), status_code=503)

    app.add_exception_handler(RequestError, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(psycopg.OperationalError, database_down)
    app.add_exception_handler(TimeoutError, busy)
