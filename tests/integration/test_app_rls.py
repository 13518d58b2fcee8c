"""The app's path through a real PostgREST: what photographers, anon and the service role can do to the
queue with their JWTs, over the app's tables and policies as the app has them (its permissive insert
policy included), and a worker connected as the least-privileged role ``apelier_worker``.

Two photographers (Ann and Bob) and anon, each with an HS256 token as Supabase Auth issues them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests import postgrest
from tests.conftest import jpeg_bytes
from tests.integration.test_daemon import drain
from worker.errors import ConfigError
from worker.queue import migrations
from worker.queue.database import Queue
from worker.service.config import Settings
from worker.storage.local import LocalStorage

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "supabase_app.sql"
SECRET = "test-jwt-secret-that-is-at-least-32-characters-long"
RETURN_ROWS = {"Prefer": "return=representation"}


@dataclass
class Stack:
    admin_url: str  # a superuser: the test's own eyes
    db_url: str  # the same database, as any role: connect with user=...
    rest: postgrest.PostgREST

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.admin_url, autocommit=True, row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def job(self, job_id: str) -> dict[str, Any]:
        return self.sql("SELECT * FROM processing_jobs WHERE id = %s", job_id)[0]


@pytest.fixture(scope="module")
def stack(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        binary = postgrest.install()
    except postgrest.Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgREST is needed in CI: {exc}")
        pytest.skip(str(exc))
    name = f"apelier_rls_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIXTURE.read_bytes())
    queue = Queue(url, "migrator")
    queue.admin.migrate()
    queue.close()
    rest_uri = psycopg.conninfo.make_conninfo(url, user="authenticator", password="")
    rest = postgrest.PostgREST(binary, rest_uri, SECRET, tmp_path_factory.mktemp("postgrest") / "log")
    try:
        yield Stack(admin_url=url, db_url=url, rest=rest)
    finally:
        rest.close()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Photographer:
    id: str
    auth_id: str
    gallery_id: str
    photo_ids: list[str]
    profile_id: str
    client: httpx.Client

    def key(self, name: str) -> str:
        return f"{self.id}/{self.gallery_id}/uploads/{name}"


@dataclass
class World:
    ann: Photographer
    bob: Photographer
    anon: httpx.Client
    service: httpx.Client


def _photographer(stack: Stack, name: str) -> Photographer:
    auth_id, pid, gid, sid = (str(uuid.uuid4()) for _ in range(4))
    stack.sql("INSERT INTO auth.users (id, email) VALUES (%s, %s)", auth_id, f"{name}@example.com")
    stack.sql(
        "INSERT INTO photographers (id, auth_user_id, email, name) VALUES (%s, %s, %s, %s)",
        pid,
        auth_id,
        f"{name}@example.com",
        name,
    )
    stack.sql("INSERT INTO galleries (id, photographer_id, title) VALUES (%s, %s, %s)", gid, pid, f"{name}'s wedding")
    photos = []
    for i in range(2):
        photo = str(uuid.uuid4())
        stack.sql(
            "INSERT INTO photos (id, gallery_id, photographer_id, original_key, filename, sort_order)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            photo,
            gid,
            pid,
            f"{pid}/{gid}/uploads/{i}.jpg",
            f"{i}.jpg",
            i,
        )
        photos.append(photo)
    stack.sql(
        "INSERT INTO style_profiles (id, photographer_id, name, reference_image_keys) VALUES (%s, %s, %s, %s)",
        sid,
        pid,
        "Warm",
        [f"{pid}/styles/ref-{i}.jpg" for i in range(3)],
    )
    return Photographer(pid, auth_id, gid, photos, sid, stack.rest.client("authenticated", auth_id))


@pytest.fixture
def world(stack: Stack) -> Iterator[World]:
    stack.sql("DELETE FROM processing_jobs")  # the module shares one database: each test its own queue
    w = World(
        ann=_photographer(stack, "ann"),
        bob=_photographer(stack, "bob"),
        anon=stack.rest.client(),
        service=stack.rest.client("service_role"),
    )
    yield w
    for client in (w.ann.client, w.bob.client, w.anon, w.service):
        client.close()


def insert_job(client: httpx.Client, **row: Any) -> httpx.Response:
    """What the app's createProcessingJob sends (supabase-js .insert(...).select().single())."""
    return client.post("/processing_jobs", json=row, headers=RETURN_ROWS)


def queued_job(stack: Stack, owner: Photographer, **columns: Any) -> str:
    """A job the owner queued, inserted behind PostgREST's back."""
    values = {"gallery_id": owner.gallery_id, "photographer_id": owner.id, "status": "queued", **columns}
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    return str(
        stack.sql(f"INSERT INTO processing_jobs ({names}) VALUES ({marks}) RETURNING id", *values.values())[0]["id"]
    )


# -- §2: a photographer cannot jump or hijack the shared queue ----------------------------------------
def test_photographer_cannot_queue_work_on_another_photographers_gallery_or_style(stack: Stack, world: World) -> None:
    ann, bob = world.ann, world.bob
    # Bob names himself as the owner (the app's permissive policy checks only that) and Ann's gallery.
    r = insert_job(bob.client, photographer_id=bob.id, gallery_id=ann.gallery_id, total_images=2)
    assert r.status_code == 403, r.text
    # Or his own gallery with Ann's style profile (her trained look, her model file).
    r = insert_job(bob.client, photographer_id=bob.id, gallery_id=bob.gallery_id, style_profile_id=ann.profile_id)
    assert r.status_code == 403, r.text
    # Or Ann as the owner outright.
    r = insert_job(bob.client, photographer_id=ann.id, gallery_id=ann.gallery_id)
    assert r.status_code == 403, r.text
    assert stack.sql("SELECT count(*) AS n FROM processing_jobs")[0]["n"] == 0

    r = insert_job(bob.client, photographer_id=bob.id, gallery_id=bob.gallery_id, style_profile_id=bob.profile_id)
    assert r.status_code == 201, r.text


def test_a_photographers_insert_takes_the_queues_defaults(stack: Stack, world: World) -> None:
    ann, bob = world.ann, world.bob
    bob_job = queued_job(stack, bob)  # Bob was first
    before = datetime.now(UTC)
    far = (before + timedelta(days=3650)).isoformat()
    r = insert_job(
        ann.client,
        photographer_id=ann.id,
        gallery_id=ann.gallery_id,
        priority=-1000000,
        max_attempts=1000,
        attempts=-5,
        run_after="2000-01-01T00:00:00Z",
        created_at="1970-01-01T00:00:00Z",
        locked_by="x",
        heartbeat_at=far,
        started_at="2000-01-01T00:00:00Z",
        processed_images=2,
        progress={"done": True},
        error_log="fine",
    )
    assert r.status_code == 201, r.text
    row = stack.job(r.json()[0]["id"])
    assert (row["priority"], row["max_attempts"], row["attempts"]) == (100, 3, 0)
    assert row["run_after"] >= before and row["created_at"] >= before
    assert (row["locked_by"], row["heartbeat_at"], row["started_at"]) == (None, None, None)
    assert (row["processed_images"], row["progress"], row["error_log"], row["status"]) == (0, {}, None, "queued")

    # So the queue stays first come, first served: a worker takes Bob's job first.
    worker = Queue(stack.admin_url, "w1")
    try:
        job = worker.jobs.claim()
        assert job is not None and job.id == bob_job
    finally:
        worker.close()

    # And a job cannot be created already running, or finished.
    for status in ("processing", "completed"):
        r = insert_job(ann.client, photographer_id=ann.id, gallery_id=ann.gallery_id, status=status, locked_by="x")
        assert r.status_code == 403, r.text


@pytest.mark.parametrize(
    "change",
    [
        {"status": "processing", "locked_by": "x", "heartbeat_at": "2999-01-01T00:00:00Z"},
        {"priority": -1000000},
        {"run_after": "2000-01-01T00:00:00Z"},
        {"max_attempts": 1000},
        {"created_at": "1970-01-01T00:00:00Z"},
        {"gallery_id": None, "job_type": "train_style"},
        {"status": "completed"},
    ],
    ids=["take-lease", "priority", "run_after", "attempts", "created_at", "job_type", "complete"],
)
def test_a_photographer_cannot_take_over_or_reorder_their_job(
    stack: Stack, world: World, change: dict[str, Any]
) -> None:
    job = queued_job(stack, world.ann)
    before = stack.job(job)
    r = world.ann.client.patch(f"/processing_jobs?id=eq.{job}", json=change, headers=RETURN_ROWS)
    assert r.status_code == 403, r.text
    assert stack.job(job) == before


def test_a_photographer_cannot_requeue_or_revive_a_job(stack: Stack, world: World) -> None:
    for status in ("failed", "canceled", "completed", "delivered"):
        job = queued_job(stack, world.ann, status=status)
        r = world.ann.client.patch(f"/processing_jobs?id=eq.{job}", json={"status": "queued"})
        assert r.status_code == 403, (status, r.text)
        assert stack.job(job)["status"] == status
    # A running job cannot be parked back either (the worker holds its lease).
    job = queued_job(stack, world.ann, status="processing", locked_by="w1", heartbeat_at=datetime.now(UTC))
    r = world.ann.client.patch(f"/processing_jobs?id=eq.{job}", json={"status": "queued"})
    assert r.status_code == 403, r.text


def test_a_photographer_cancels_their_own_job_either_way(stack: Stack, world: World) -> None:
    ann = world.ann
    # The worker's way.
    job = queued_job(stack, ann)
    r = ann.client.patch(f"/processing_jobs?id=eq.{job}", json={"status": "canceled"}, headers=RETURN_ROWS)
    assert r.status_code == 200 and r.json()[0]["status"] == "canceled", r.text
    # The app's way (editing/page.tsx handleCancelJob), on a queued job and on a running one.
    for columns in ({}, {"status": "processing", "locked_by": "w1", "heartbeat_at": datetime.now(UTC)}):
        job = queued_job(stack, ann, **columns)
        cancel = {"status": "failed", "error_log": "Cancelled by user", "completed_at": datetime.now(UTC).isoformat()}
        r = ann.client.patch(f"/processing_jobs?id=eq.{job}", json=cancel, headers=RETURN_ROWS)
        assert r.status_code == 200 and r.json()[0]["status"] == "failed", r.text
        assert stack.job(job)["error_log"] == "Cancelled by user"
    # Deleting (the app's dismiss) stays the owner's too.
    r = ann.client.delete(f"/processing_jobs?id=eq.{job}")
    assert r.status_code == 204 and not stack.sql("SELECT 1 FROM processing_jobs WHERE id = %s", job)


def test_another_photographer_and_anon_cannot_touch_a_job(stack: Stack, world: World) -> None:
    job = queued_job(stack, world.ann)
    before = stack.job(job)
    for client in (world.bob.client, world.anon):
        assert client.get(f"/processing_jobs?id=eq.{job}").json() == []
        r = client.patch(f"/processing_jobs?id=eq.{job}", json={"status": "canceled"}, headers=RETURN_ROWS)
        assert r.status_code == 200 and r.json() == [], r.text  # no row of theirs matched
        r = client.delete(f"/processing_jobs?id=eq.{job}", headers=RETURN_ROWS)
        assert r.status_code == 200 and r.json() == [], r.text
    assert stack.job(job) == before
    r = insert_job(world.anon, photographer_id=world.ann.id, gallery_id=world.ann.gallery_id)
    assert r.status_code == 401, r.text


def test_the_service_role_keeps_full_control(stack: Stack, world: World) -> None:
    r = insert_job(world.service, photographer_id=world.ann.id, gallery_id=world.ann.gallery_id, priority=5)
    assert r.status_code == 201, r.text
    job = r.json()[0]["id"]
    assert stack.job(job)["priority"] == 5
    r = world.service.patch(f"/processing_jobs?id=eq.{job}", json={"status": "processing", "locked_by": "op"})
    assert r.status_code == 204, r.text
    assert stack.job(job)["locked_by"] == "op"


# -- §3: every status the app writes ------------------------------------------------------------------
def test_the_apps_mark_delivered_is_accepted(stack: Stack, world: World) -> None:
    job = queued_job(stack, world.ann, status="completed", completed_at=datetime.now(UTC))
    # app/api/processing-jobs/route.ts, action mark_delivered, with the service-role key.
    r = world.service.patch(
        f"/processing_jobs?id=eq.{job}&select=id,status",
        json={"status": "delivered", "completed_at": datetime.now(UTC).isoformat()},
        headers=RETURN_ROWS,
    )
    assert r.status_code == 200, r.text
    assert r.json() == [{"id": job, "status": "delivered"}]
    # The photographer may mark their own completed job delivered too; nothing else is new.
    job = queued_job(stack, world.ann, status="completed")
    r = world.ann.client.patch(f"/processing_jobs?id=eq.{job}", json={"status": "delivered"})
    assert r.status_code == 204, r.text
    r = world.service.patch(f"/processing_jobs?id=eq.{job}", json={"status": "error"})
    assert r.status_code == 400 and "processing_jobs_status_check" in r.text, r.text


# -- §4: the functions the app calls with supabase.rpc -------------------------------------------------
def rpc(client: httpx.Client, name: str, **args: Any) -> httpx.Response:
    return client.post(f"/rpc/{name}", json=args)


def test_enqueue_a_gallery(stack: Stack, world: World) -> None:
    ann, bob = world.ann, world.bob
    r = rpc(ann.client, "apelier_enqueue_gallery", gallery_id=ann.gallery_id, settings_override={"auto_crop": "4:5"})
    assert r.status_code == 200, r.text
    job = r.json()
    assert (job["job_type"], job["status"], job["photographer_id"], job["gallery_id"]) == (
        "gallery",
        "queued",
        ann.id,
        ann.gallery_id,
    )
    assert (job["total_images"], job["settings_override"], job["priority"]) == (2, {"auto_crop": "4:5"}, 100)
    # Pressed twice: the job already waiting is returned, not a second one.
    crop = {"auto_crop": "4:5"}
    assert rpc(ann.client, "apelier_enqueue_gallery", gallery_id=ann.gallery_id, settings_override=crop).json() == job
    other = rpc(ann.client, "apelier_enqueue_gallery", gallery_id=ann.gallery_id, style_profile_id=ann.profile_id)
    assert other.status_code == 200 and other.json()["id"] != job["id"]
    assert other.json()["style_profile_id"] == ann.profile_id
    # Other settings are another request too (the HTTP API follows the same rule: apelier.enqueue_gallery).
    square = rpc(ann.client, "apelier_enqueue_gallery", gallery_id=ann.gallery_id, settings_override={"auto_crop": "1"})
    assert square.status_code == 200 and square.json()["id"] not in (job["id"], other.json()["id"])
    # The shared path is the one function of schema apelier a signed-in user may run.
    callable_ = stack.sql(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'apelier' AND has_function_privilege('authenticated', p.oid, 'EXECUTE')"
    )
    assert [r["proname"] for r in callable_] == ["enqueue_gallery"]

    r = rpc(bob.client, "apelier_enqueue_gallery", gallery_id=ann.gallery_id)
    assert r.status_code == 404, r.text
    r = rpc(bob.client, "apelier_enqueue_gallery", gallery_id=bob.gallery_id, style_profile_id=ann.profile_id)
    assert r.status_code == 403, r.text
    r = rpc(world.anon, "apelier_enqueue_gallery", gallery_id=ann.gallery_id)
    assert r.status_code == 401, r.text
    assert stack.sql("SELECT count(*) AS n FROM processing_jobs")[0]["n"] == 3


def test_enqueue_a_restyle(stack: Stack, world: World) -> None:
    ann, bob = world.ann, world.bob
    photo = ann.photo_ids[1]
    r = rpc(ann.client, "apelier_enqueue_restyle", gallery_id=ann.gallery_id, photo_ids=[photo, photo],
            style_profile_id=ann.profile_id)  # fmt: skip
    assert r.status_code == 200, r.text
    job = r.json()
    assert (job["job_type"], job["payload"], job["total_images"]) == ("restyle", {"photo_ids": [photo]}, 1)
    # Someone else's photo, or a photo of another gallery, is not found; no photos is a bad request.
    r = rpc(ann.client, "apelier_enqueue_restyle", gallery_id=ann.gallery_id, photo_ids=[bob.photo_ids[0]])
    assert r.status_code == 404 and bob.photo_ids[0] in r.text, r.text
    r = rpc(bob.client, "apelier_enqueue_restyle", gallery_id=ann.gallery_id, photo_ids=[photo])
    assert r.status_code == 404, r.text
    r = rpc(ann.client, "apelier_enqueue_restyle", gallery_id=ann.gallery_id, photo_ids=[])
    assert r.status_code == 400, r.text


def test_enqueue_a_style_training(stack: Stack, world: World) -> None:
    ann, bob = world.ann, world.bob
    pairs = [
        {"original_key": f"{ann.id}/styles/pairs/{i}-before.jpg", "edited_key": f"{ann.id}/styles/pairs/{i}-after.jpg"}
        for i in range(6)
    ]
    r = rpc(ann.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id, pairs=pairs, epochs=40)
    assert r.status_code == 200, r.text
    job = r.json()
    # The payload as worker/jobs/style.py reads it.
    assert (job["job_type"], job["gallery_id"], job["style_profile_id"]) == ("train_style", None, ann.profile_id)
    assert job["payload"] == {"pairs": pairs, "epochs": 40}

    r = rpc(ann.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id)
    assert r.status_code == 200, r.text
    assert r.json()["payload"] == {"training_method": "histogram"}  # the profile's reference_image_keys
    refs = [f"{ann.id}/styles/finished-{i}.jpg" for i in range(2)]
    r = rpc(ann.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id, reference_keys=refs)
    assert r.json()["payload"] == {"training_method": "histogram", "reference_keys": refs}
    # A Lightroom preset: alone it is the style; 3 pairs or more refine it (worker/jobs/style.py).
    preset = f"{ann.id}/presets/golden.xmp"
    r = rpc(ann.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id, preset_file_key=preset)
    assert r.status_code == 200, r.text
    assert r.json()["payload"] == {"preset_file_key": preset}
    r = rpc(ann.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id, pairs=pairs[:3],
            preset_file_key=preset, epochs=20)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["payload"] == {"pairs": pairs[:3], "epochs": 20, "preset_file_key": preset}

    bad: list[dict[str, Any]] = [
        {"pairs": pairs[:3]},  # too few without a preset
        {"pairs": pairs[:2], "preset_file_key": preset},  # too few with one
        {"preset_file_key": f"{bob.id}/presets/golden.xmp"},  # Bob's preset
        {"preset_file_key": f"{ann.id}/../{bob.id}/golden.xmp"},
        {"preset_file_key": "golden.xmp"},  # in nobody's folder
        {"preset_file_key": preset, "reference_keys": refs},  # the histogram method uses no preset
        {"preset_file_key": preset, "epochs": 20},  # epochs without pairs
        {"pairs": [{"original_key": f"{bob.id}/x.jpg", "edited_key": f"{ann.id}/y.jpg"}] * 5},  # Bob's file
        {"pairs": [{"original_key": f"{ann.id}/../{bob.id}/x.jpg", "edited_key": f"{ann.id}/y.jpg"}] * 5},
        {"pairs": [{"original_key": f"{ann.id}/x.jpg"}] * 5},
        {"pairs": pairs, "epochs": 0},
        {"pairs": pairs, "reference_keys": refs},
        {"reference_keys": [f"{bob.id}/styles/x.jpg"]},
    ]
    for args in bad:
        r = rpc(ann.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id, **args)
        assert r.status_code == 400, (args, r.text)
    r = rpc(bob.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id, pairs=pairs)
    assert r.status_code == 404, r.text
    r = rpc(bob.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id, preset_file_key=preset)
    assert r.status_code == 404, r.text
    assert stack.sql("SELECT count(*) AS n FROM processing_jobs")[0]["n"] == 5
    # One function of that name: PostgREST never has to choose between overloads.
    n = stack.sql("SELECT count(*) AS n FROM pg_proc WHERE proname = 'apelier_enqueue_style_training'")[0]["n"]
    assert n == 1


def test_cancel_through_rpc(stack: Stack, world: World) -> None:
    ann, bob = world.ann, world.bob
    job = rpc(ann.client, "apelier_enqueue_gallery", gallery_id=ann.gallery_id).json()["id"]
    r = rpc(bob.client, "apelier_cancel_job", job_id=job)
    assert r.status_code == 404, r.text
    assert stack.job(job)["status"] == "queued"
    r = rpc(ann.client, "apelier_cancel_job", job_id=job)
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    assert stack.job(job)["completed_at"] is not None
    # Running: canceled, and the worker that holds it lets go (its ack).
    running = rpc(ann.client, "apelier_enqueue_gallery", gallery_id=ann.gallery_id).json()["id"]
    worker = Queue(stack.admin_url, "w1")
    try:
        assert worker.jobs.claim() is not None
        r = rpc(ann.client, "apelier_cancel_job", job_id=running)
        assert r.json()["status"] == "canceled"
        assert worker.jobs.heartbeat(running) == "canceled"
        assert worker.jobs.ack_cancel(running, 0, {})
    finally:
        worker.close()
    # An ended job comes back as it is.
    done = queued_job(stack, ann, status="completed")
    r = rpc(ann.client, "apelier_cancel_job", job_id=done)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    assert rpc(world.anon, "apelier_cancel_job", job_id=done).status_code == 401


def test_a_server_calls_the_functions_as_the_user_over_sql(stack: Stack, world: World) -> None:
    """docs/app.md: what a server with its own connection does (PostgREST does the same per request)."""
    ann = world.ann

    def as_user(sub: str | None) -> dict[str, Any]:
        with psycopg.connect(stack.admin_url, row_factory=dict_row) as conn, conn.transaction():
            claims = {"role": "authenticated"} | ({"sub": sub} if sub else {})
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
            conn.execute("SET LOCAL ROLE authenticated")
            row = conn.execute("SELECT * FROM public.apelier_enqueue_gallery(%s)", (ann.gallery_id,)).fetchone()
            assert row is not None
            return row

    job = as_user(ann.auth_id)
    assert (str(job["photographer_id"]), job["status"]) == (ann.id, "queued")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="sign in"):
        as_user(None)
    with pytest.raises(psycopg.Error, match="not found") as refused:
        as_user(world.bob.auth_id)
    assert refused.value.sqlstate == "PT404"


# -- the worker's own role: exactly the privileges docs/deploy.md lists -------------------------------
@pytest.fixture
def worker_url(stack: Stack) -> Iterator[str]:
    """The database as the operator sets it up: ``ALTER ROLE apelier_worker LOGIN PASSWORD …``."""
    stack.sql("ALTER ROLE apelier_worker LOGIN")
    yield psycopg.conninfo.make_conninfo(stack.db_url, user="apelier_worker", password="")
    stack.sql("ALTER ROLE apelier_worker NOLOGIN")


def test_the_worker_role_runs_jobs_the_app_queued(
    stack: Stack, world: World, worker_url: str, storage: LocalStorage, settings: Settings, coffee: Any, astronaut: Any
) -> None:
    ann = world.ann
    for i, photo in enumerate((coffee, astronaut)):
        storage.put(ann.key(f"{i}.jpg"), jpeg_bytes(photo), "image/jpeg")
    for i in range(3):
        storage.put(f"{ann.id}/styles/ref-{i}.jpg", jpeg_bytes(coffee[:, ::-1]), "image/jpeg")
    training = rpc(ann.client, "apelier_enqueue_style_training", style_profile_id=ann.profile_id).json()["id"]
    gallery = rpc(ann.client, "apelier_enqueue_gallery", gallery_id=ann.gallery_id, style_profile_id=ann.profile_id)
    drain(worker_url, storage, settings)  # the daemon, connected as apelier_worker

    for job in (training, gallery.json()["id"]):
        row = stack.job(job)
        assert row["status"] == "completed", row["error_log"]
    profile = stack.sql("SELECT * FROM style_profiles WHERE id = %s", ann.profile_id)[0]
    assert (profile["training_status"], profile["training_method"]) == ("ready", "histogram")
    photos = stack.sql("SELECT * FROM photos WHERE gallery_id = %s", ann.gallery_id)
    assert all(p["status"] == "edited" and p["ai_edits"]["style"]["applied"] for p in photos)
    assert stack.sql("SELECT images_edited_count AS n FROM photographers WHERE id = %s", ann.id)[0]["n"] == 2
    assert stack.sql("SELECT state FROM apelier.workers WHERE id = %s", settings.worker_id)


def test_the_worker_role_runs_every_queue_operation_and_nothing_more(
    stack: Stack, world: World, worker_url: str
) -> None:
    ann = world.ann
    photo = ann.photo_ids[0]
    worker = Queue(worker_url, "w-role")
    try:
        assert worker.admin.schema_version() == migrations.latest_version()
        job = rpc(ann.client, "apelier_enqueue_restyle", gallery_id=ann.gallery_id, photo_ids=[photo]).json()["id"]
        assert worker.jobs.pending() == (1, 0)
        claimed = worker.jobs.claim()
        assert claimed is not None and claimed.id == job
        assert worker.app.gallery(ann.gallery_id) is not None and len(worker.app.gallery_photos(ann.gallery_id)) == 2
        state = worker.jobs.update_progress(job, phase="analysis", processed=0, total=1, progress={}, phase_timings={})
        assert state == "processing"
        assert worker.jobs.fail_photo(job, photo, {"phase": "analysis", "reason": "unreadable"}) == "processing"
        assert worker.jobs.merge_photo_suggestions(job, {photo: {"highlight": True}}) == 1
        assert worker.jobs.fail(job, "storage down", 0.0) == "queued"
        assert worker.jobs.claim() is not None and worker.jobs.setup_done(job) == "processing"
        assert worker.jobs.photo_started(job, photo) == "processing"
        assert worker.jobs.photo_processed(job, photo, [ann.key("edited/x.jpg")]) == "processing"
        assert worker.jobs.photos_in_flight(job) == {}
        assert worker.jobs.finish_photo(job, photo, {"edited_key": ann.key("edited/x.jpg")}) == "processing"
        assert worker.jobs.end_attempt(job, "storage down", 0.0, outside=True) == "queued"
        assert worker.jobs.unrecorded_outputs(0.0) == []
        worker.jobs.forget_output(job, ann.key("edited/x.jpg"))
        assert worker.jobs.claim() is not None and worker.jobs.release(job)
        assert worker.jobs.claim() is not None
        assert rpc(ann.client, "apelier_cancel_job", job_id=job).json()["status"] == "canceled"
        assert worker.jobs.heartbeat(job) == "canceled" and worker.jobs.ack_cancel(job, 0, {})

        stale = queued_job(stack, ann, status="processing", locked_by="gone", attempts=1,
                           heartbeat_at=datetime.now(UTC) - timedelta(hours=1))  # fmt: skip
        assert [str(r["job_id"]) for r in worker.jobs.requeue_stale(60)] == [stale]
        assert worker.jobs.cancel(stale) == "canceled"  # the operator's `apelier-worker cancel`
        report = worker.admin.status_report()
        assert report["queue"] and "workers" in report

        # Nothing beyond: no new jobs, no reordering, no deletes, no photographer's personal data.
        forbidden = [
            ("INSERT INTO processing_jobs (gallery_id, photographer_id) VALUES (%s, %s)", (ann.gallery_id, ann.id)),
            ("UPDATE processing_jobs SET priority = -1 WHERE id = %s", (job,)),
            ("DELETE FROM processing_jobs WHERE id = %s", (job,)),
            ("DELETE FROM photos WHERE id = %s", (photo,)),
            ("SELECT email FROM photographers WHERE id = %s", (ann.id,)),
            ("UPDATE photographers SET name = 'x' WHERE id = %s", (ann.id,)),
            ("SELECT password_hash FROM galleries WHERE id = %s", (ann.gallery_id,)),
            ("CREATE TABLE public.mine (id int)", ()),
        ]
        with psycopg.connect(worker_url, autocommit=True) as conn:
            for statement, params in forbidden:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement, params)
        with pytest.raises(ConfigError, match="migrate needs the database owner's connection"):
            worker.admin.migrate()
    finally:
        worker.close()
