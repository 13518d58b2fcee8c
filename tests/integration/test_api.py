"""The HTTP API (``worker/api/``) against a real PostgreSQL, through FastAPI's TestClient: the old engine's
routes and shapes, the rows they queue as the daemon reads them, authentication, and tenants."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from worker.api.app import create_app
from worker.queue.database import Queue
from worker.service.config import Settings

SECRET = "test-jwt-secret-0123456789-abcdefghijklmnop"  # the project's JWT secret (>= 32 characters)
KEY = "k3y-for-the-apps-server_0123456789abcdefghij"  # WORKER_API_KEY


@dataclass
class Studio:
    """One photographer as the app has them: a Supabase user, a gallery of photos, a style profile."""

    photographer_id: str
    user_id: str
    gallery_id: str
    photo_ids: list[str]
    style_id: str

    def key(self, path: str) -> str:
        return f"{self.photographer_id}/{path}"


def make_studio(queue: Queue, name: str, photos: int = 2) -> Studio:
    photographer = queue.admin.upsert_photographer(str(uuid.uuid4()), name)
    user = str(uuid.uuid4())
    queue.conn.execute("UPDATE public.photographers SET auth_user_id = %s WHERE id = %s", (user, photographer))
    gallery = queue.admin.insert_gallery(photographer, f"{name}'s wedding")
    ids = [
        queue.admin.insert_photo(
            photographer_id=photographer,
            gallery_id=gallery,
            key=f"{photographer}/{gallery}/originals/{i}_IMG_{i}.jpg",
            filename=f"IMG_{i}.jpg",
            sort_order=i,
        )
        for i in range(photos)
    ]
    style = queue.admin.insert_style_profile(photographer, f"{name}'s look")
    return Studio(photographer, user, gallery, ids, style)


def token(user_id: str, *, secret: str = SECRET, expires_in: float = 600, **claims: Any) -> str:
    """A Supabase access token as Supabase Auth signs it (HS256, aud authenticated)."""
    body = {"sub": user_id, "aud": "authenticated", "role": "authenticated", "exp": int(time.time() + expires_in)}
    return jwt.encode({**body, **claims}, secret, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def api(db_url: str) -> Iterator[TestClient]:
    settings = Settings(api_key=KEY, supabase_jwt_secret=SECRET, worker_id="api-test")
    with TestClient(create_app(db_url, settings)) as client:
        yield client


@pytest.fixture
def a(queue: Queue) -> Studio:
    return make_studio(queue, "Alice")


@pytest.fixture
def b(queue: Queue) -> Studio:
    return make_studio(queue, "Bob")


def as_user(studio: Studio) -> dict[str, str]:
    return bearer(token(studio.user_id))


def jobs(queue: Queue) -> list[dict[str, Any]]:
    return queue.conn.execute("SELECT * FROM public.processing_jobs ORDER BY created_at").fetchall()


# -- /api/process/gallery ---------------------------------------------------------------------------
def test_gallery_route_queues_the_job_the_daemon_claims(api: TestClient, queue: Queue, a: Studio) -> None:
    body = {
        "gallery_id": a.gallery_id,
        "style_profile_id": a.style_id,
        "settings": {"retouch_intensity": "light"},
        "included_images": 40,
    }
    r = api.post("/api/process/gallery", json=body, headers=as_user(a))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer == {
        "job_id": answer["job_id"],
        "status": "queued",
        "message": "Processing queued for 2 photos",
        "total_images": 2,
    }
    job = queue.jobs.claim()
    assert job is not None and job.id == answer["job_id"]
    assert (job.job_type, job.photographer_id, job.gallery_id, job.style_profile_id) == (
        "gallery",
        a.photographer_id,
        a.gallery_id,
        a.style_id,
    )
    assert job.settings_override == {"retouch_intensity": "light"}
    assert job.payload == {"included_images": 40}


def test_the_same_request_reuses_the_queued_job_and_a_different_one_queues_another(
    api: TestClient, queue: Queue, a: Studio
) -> None:
    """One rule with the app's rpc (apelier.enqueue_gallery, migration 9): a queued job with the same
    style, settings and payload is the same request; with different ones it is a different request."""
    first = api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=as_user(a)).json()
    again = api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=as_user(a)).json()
    assert again["job_id"] == first["job_id"] and again["message"].endswith("already queued: its job)")
    styled = api.post(
        "/api/process/gallery", json={"gallery_id": a.gallery_id, "style_profile_id": a.style_id}, headers=as_user(a)
    ).json()
    light = {"gallery_id": a.gallery_id, "settings": {"retouch_intensity": "light"}}
    lighter = api.post("/api/process/gallery", json=light, headers=as_user(a)).json()
    counted = api.post("/api/process/gallery", json={**light, "included_images": 40}, headers=as_user(a)).json()
    ids = [first["job_id"], styled["job_id"], lighter["job_id"], counted["job_id"]]
    assert len(set(ids)) == 4  # the queued job keeps its own style and settings: nothing is changed under it
    assert [(str(j["id"]), j["style_profile_id"] and str(j["style_profile_id"])) for j in jobs(queue)] == [
        (first["job_id"], None),
        (styled["job_id"], a.style_id),
        (lighter["job_id"], None),
        (counted["job_id"], None),
    ]
    assert api.post("/api/process/gallery", json=light, headers=as_user(a)).json()["job_id"] == lighter["job_id"]

    assert queue.jobs.claim() is not None  # a worker has the first one now: the next request queues a new job
    third = api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=as_user(a)).json()
    assert third["job_id"] not in ids
    assert [j["status"] for j in jobs(queue)] == ["processing", "queued", "queued", "queued", "queued"]


def test_requests_at_the_same_moment_queue_one_gallery_job(db_url: str, queue: Queue, a: Studio) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    queues = [Queue(db_url, f"api-{i}") for i in range(6)]
    start = threading.Barrier(len(queues))

    def request(q: Queue) -> str:
        start.wait()
        job_id, _ = q.admin.enqueue_gallery(gallery_id=a.gallery_id, style_profile_id=None, settings_override=None)
        return job_id

    try:
        with ThreadPoolExecutor(len(queues)) as pool:
            ids = set(pool.map(request, queues))
    finally:
        for q in queues:
            q.close()
    assert len(ids) == 1 and [str(j["id"]) for j in jobs(queue)] == list(ids)


def test_gallery_route_refusals_queue_nothing(api: TestClient, queue: Queue, a: Studio, b: Studio) -> None:
    empty = queue.admin.insert_gallery(a.photographer_id, "empty")
    cases = [
        ({"gallery_id": str(uuid.uuid4())}, 404, "not found"),
        ({"gallery_id": empty}, 400, "No photos found in gallery. Upload photos first."),
        ({"gallery_id": a.gallery_id, "style_profile_id": b.style_id}, 404, "Style profile not found"),
        ({"gallery_id": "not-a-uuid"}, 422, "gallery_id"),
        ({}, 422, "gallery_id: Field required"),
    ]
    for body, status, message in cases:
        r = api.post("/api/process/gallery", json=body, headers=as_user(a))
        assert r.status_code == status, (body, r.text)
        assert r.json()["status"] == "error"
        assert message in r.json()["message"] and r.json()["error"] == r.json()["message"]
    assert jobs(queue) == []


# -- /api/process/status ----------------------------------------------------------------------------
def test_status_follows_the_row_as_the_worker_updates_it(api: TestClient, queue: Queue, a: Studio) -> None:
    job_id = api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=as_user(a)).json()["job_id"]

    def status() -> dict[str, Any]:
        r = api.get(f"/api/process/status/{job_id}", headers=as_user(a))
        assert r.status_code == 200, r.text
        return r.json()

    queued = status()
    assert set(queued) == {
        *("job_id", "status", "current_phase", "processed_images", "total_images", "progress", "error_log"),
        *("started_at", "completed_at", "job_type", "details"),
    }
    assert (queued["job_id"], queued["status"], queued["progress"], queued["started_at"]) == (job_id, "queued", 0, None)

    assert queue.jobs.claim() is not None
    queue.jobs.update_progress(
        job_id, phase="retouch", processed=1, total=2, progress={"photos_per_min": 12.0}, phase_timings={}
    )
    running = status()
    assert (running["status"], running["current_phase"], running["processed_images"], running["total_images"]) == (
        "processing",
        "retouch",
        1,
        2,
    )
    assert running["progress"] == 50.0
    assert running["details"] == {"photos_per_min": 12.0}
    assert running["started_at"] is not None

    assert queue.jobs.fail(job_id, "storage unreachable", retry_in_s=None) == "failed"
    failed = status()
    assert (failed["status"], failed["error_log"]) == ("failed", "storage unreachable")
    assert failed["completed_at"] is not None


def test_status_of_a_completed_job(api: TestClient, queue: Queue, a: Studio) -> None:
    job_id = api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=as_user(a)).json()["job_id"]
    assert queue.jobs.claim() is not None
    assert queue.jobs.complete(job_id, processed=2, total=2, progress={}, phase_timings={}, summary=None)
    done = api.get(f"/api/process/status/{job_id}", headers=bearer(KEY)).json()
    assert (done["status"], done["progress"], done["processed_images"]) == ("completed", 100.0, 2)
    missing = api.get(f"/api/process/status/{uuid.uuid4()}", headers=bearer(KEY))
    assert missing.status_code == 404 and missing.json()["error"] == "Job not found"


# -- /api/process/restyle ---------------------------------------------------------------------------
def test_restyle_queues_one_photo(api: TestClient, queue: Queue, a: Studio) -> None:
    body = {"photo_id": a.photo_ids[1], "style_profile_id": a.style_id, "gallery_id": a.gallery_id}
    r = api.post("/api/process/restyle", json=body, headers=as_user(a))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "queued" and "error" not in answer  # what the app checks
    assert (answer["photo_id"], answer["style_name"]) == (a.photo_ids[1], "Alice's look")
    job = queue.jobs.claim()
    assert job is not None and job.id == answer["job_id"]
    assert (job.job_type, job.gallery_id, job.style_profile_id, job.payload) == (
        "restyle",
        a.gallery_id,
        a.style_id,
        {"photo_ids": [a.photo_ids[1]]},
    )


def test_restyle_refusals(api: TestClient, queue: Queue, a: Studio, b: Studio) -> None:
    other_gallery = queue.admin.insert_gallery(a.photographer_id, "other")
    queue.conn.execute("UPDATE public.photos SET is_culled = true WHERE id = %s", (a.photo_ids[0],))
    cases = [
        ({"photo_id": str(uuid.uuid4()), "style_profile_id": a.style_id}, 404, "Photo not found"),
        ({"photo_id": a.photo_ids[1], "style_profile_id": b.style_id}, 404, "Style profile not found"),
        ({"photo_id": a.photo_ids[1], "style_profile_id": a.style_id, "gallery_id": other_gallery}, 400, "not in"),
        ({"photo_id": a.photo_ids[0], "style_profile_id": a.style_id}, 400, "culled"),
        ({"photo_id": a.photo_ids[1]}, 422, "style_profile_id"),
    ]
    for body, status, message in cases:
        r = api.post("/api/process/restyle", json=body, headers=as_user(a))
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["error"]
    assert jobs(queue) == []


# -- /api/style -------------------------------------------------------------------------------------
def test_create_neural_queues_a_profile_and_its_training(api: TestClient, queue: Queue, a: Studio) -> None:
    pairs = [
        {
            "original_key": a.key(f"styles/warm/originals/{i}_IMG_{i}.CR2"),
            "edited_key": a.key(f"styles/warm/edited/{i}.jpg"),
        }
        for i in range(5)
    ]
    body = {
        "photographer_id": a.photographer_id,
        "name": "Warm film",
        "description": None,
        "reference_image_keys": [k for p in pairs for k in p.values()],
        "pairs": pairs,
    }
    r = api.post("/api/style/create-neural", json=body, headers=as_user(a))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["name"], answer["status"], answer["training_method"]) == ("Warm film", "queued", "lut3d")
    profile = queue.app.style_profile(answer["id"])
    assert profile is not None
    assert (str(profile["photographer_id"]), profile["status"], profile["training_status"]) == (
        a.photographer_id,
        "pending",
        "pending",
    )
    assert len(profile["reference_image_keys"]) == 10
    job = queue.jobs.claim()
    assert job is not None and job.id == answer["job_id"]
    assert (job.job_type, job.style_profile_id, job.photographer_id) == ("train_style", answer["id"], a.photographer_id)
    assert job.payload == {"pairs": pairs}


def test_create_neural_refusals_insert_nothing(api: TestClient, queue: Queue, a: Studio, b: Studio) -> None:
    good = [{"original_key": a.key(f"s/o/{i}.jpg"), "edited_key": a.key(f"s/e/{i}.jpg")} for i in range(5)]
    outside = [*good[:4], {"original_key": b.key("s/o/x.jpg"), "edited_key": a.key("s/e/x.jpg")}]
    base = {"photographer_id": a.photographer_id, "name": "Look"}
    cases = [
        ({**base, "pairs": good[:4]}, as_user(a), 400, "Need 5 to 200 before/after pairs, got 4"),
        ({**base, "pairs": outside}, as_user(a), 400, "outside photographer"),
        ({**base, "pairs": good, "photographer_id": b.photographer_id}, as_user(a), 403, "not the signed-in user's"),
        ({**base, "pairs": good, "photographer_id": str(uuid.uuid4())}, bearer(KEY), 404, "not found"),
        ({**base, "pairs": good, "name": ""}, as_user(a), 422, "name"),
    ]
    for body, headers, status, message in cases:
        r = api.post("/api/style/create-neural", json=body, headers=headers)
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["message"]
    assert jobs(queue) == []
    assert queue.conn.execute("SELECT count(*) AS n FROM public.style_profiles").fetchone() == {"n": 2}


def test_create_trains_on_pairs_the_app_matched_by_name_else_the_histogram(
    api: TestClient, queue: Queue, a: Studio
) -> None:
    # What the app's settings page sends: edited photos as references, RAW files in settings, each upload
    # named {Date.now()}_{file name}; a pair whose edit failed to upload is missing from one list.
    names = [f"DSC_{i:04d}" for i in range(6)]
    raw = [a.key(f"styles/look/raw/{1000 + i}_{n}.NEF") for i, n in enumerate(names)]
    edited = [a.key(f"styles/look/edited/{2000 + i}_{n}.jpg") for i, n in enumerate(names) if i != 2]
    body = {
        "photographer_id": a.photographer_id,
        "name": "Look",
        "reference_image_keys": edited,
        "settings": {"raw_image_keys": raw, "training_mode": "paired"},
        "preset_file_key": a.key("presets/look.xmp"),
    }
    r = api.post("/api/style/create", json=body, headers=as_user(a))
    assert r.status_code == 200, r.text
    assert r.json()["training_method"] == "lut3d"
    job = queue.jobs.claim()
    assert job is not None and job.style_profile_id == r.json()["id"]
    assert job.payload == {
        "pairs": [{"original_key": raw[i], "edited_key": edited[j]} for j, i in enumerate((0, 1, 3, 4, 5))],
        "preset_file_key": a.key("presets/look.xmp"),  # the pairs refine the photographer's preset
    }
    profile = queue.app.style_profile(r.json()["id"])
    assert profile is not None and profile["settings"]["preset_file_key"] == a.key("presets/look.xmp")

    # Fewer than 3 pairs match: the preset alone is the look.
    body = {**body, "settings": {"raw_image_keys": raw[:2], "training_mode": "paired"}}
    r = api.post("/api/style/create", json=body, headers=as_user(a))
    assert r.status_code == 200, r.text
    assert r.json()["training_method"] == "preset"
    job = queue.jobs.claim()
    assert job is not None and job.payload == {"preset_file_key": a.key("presets/look.xmp")}

    # Fewer than 5 pairs match and no preset: the reference photos train the histogram method.
    body = {k: v for k, v in body.items() if k != "preset_file_key"}
    body = {**body, "settings": {"raw_image_keys": raw[:3], "training_mode": "paired"}}
    r = api.post("/api/style/create", json=body, headers=as_user(a))
    assert r.status_code == 200, r.text
    assert r.json()["training_method"] == "histogram"
    job = queue.jobs.claim()
    assert job is not None
    assert job.payload == {"training_method": "histogram", "reference_keys": edited}

    outside = {**body, "reference_image_keys": ["someone-else/x.jpg"]}
    assert api.post("/api/style/create", json=outside, headers=as_user(a)).status_code == 400


def test_style_status_and_retrain(api: TestClient, queue: Queue, a: Studio) -> None:
    pairs = [{"original_key": a.key(f"s/o/{i}.jpg"), "edited_key": a.key(f"s/e/{i}.jpg")} for i in range(5)]
    created = api.post(
        "/api/style/create-neural",
        json={"photographer_id": a.photographer_id, "name": "Look", "pairs": pairs},
        headers=as_user(a),
    ).json()
    profile_id = created["id"]
    r = api.get(f"/api/style/{profile_id}/status", headers=as_user(a))
    assert r.status_code == 200, r.text
    status = r.json()
    assert (status["id"], status["name"], status["status"], status["job_id"]) == (
        profile_id,
        "Look",
        "pending",
        created["job_id"],
    )
    assert (status["reference_count"], status["has_preset"], status["model_key"]) == (0, False, None)

    # The worker trains it (what worker/jobs/style.py writes), then the app asks for a retrain.
    job = queue.jobs.claim()
    assert job is not None
    assert queue.jobs.start_style_training(job.id) == "processing"
    assert api.get(f"/api/style/{profile_id}/status", headers=as_user(a)).json()["status"] == "training"
    model_key = a.key(f"styles/{profile_id}.pt")
    queue.jobs.update_style_training(
        profile_id,
        training_status="ready",
        training_method="lut3d",
        model_key=model_key,
        model_filename=f"{profile_id}.pt",
        training_time_s=12.5,
        pairs_used=5,
        training_error=None,
    )
    assert queue.jobs.complete(job.id, processed=1, total=1, progress={}, phase_timings={}, summary=None)
    ready = api.get(f"/api/style/{profile_id}/status", headers=as_user(a)).json()
    assert (ready["status"], ready["model_key"], ready["pairs_used"], ready["job_id"]) == ("ready", model_key, 5, None)

    r = api.post(f"/api/style/{profile_id}/retrain", headers=as_user(a))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "queued"
    again = api.post(f"/api/style/{profile_id}/retrain", headers=as_user(a)).json()
    assert (again["status"], again["job_id"]) == ("training", r.json()["job_id"])
    retrain = queue.jobs.claim()
    assert retrain is not None and retrain.id == r.json()["job_id"]
    assert (retrain.job_type, retrain.payload) == ("train_style", {"pairs": pairs})


def test_retrain_of_a_profile_never_trained_here_uses_its_references(api: TestClient, queue: Queue, a: Studio) -> None:
    r = api.post(f"/api/style/{a.style_id}/retrain", headers=as_user(a))
    assert r.status_code == 400 and "no reference photos" in r.json()["message"]
    refs = [a.key(f"refs/{i}.jpg") for i in range(3)]
    queue.conn.execute("UPDATE public.style_profiles SET reference_image_keys = %s WHERE id = %s", (refs, a.style_id))
    r = api.post(f"/api/style/{a.style_id}/retrain", headers=as_user(a))
    assert r.status_code == 200, r.text
    job = queue.jobs.claim()
    assert job is not None and job.payload == {"training_method": "histogram", "reference_keys": refs}


# -- authentication ---------------------------------------------------------------------------------
ROUTES = [
    ("POST", "/api/process/gallery"),
    ("GET", "/api/process/status/{job}"),
    ("POST", "/api/process/restyle"),
    ("POST", "/api/style/create"),
    ("POST", "/api/style/create-neural"),
    ("GET", "/api/style/{style}/status"),
    ("POST", "/api/style/{style}/retrain"),
]


def test_every_route_refuses_a_caller_without_a_valid_token(api: TestClient, queue: Queue, a: Studio) -> None:
    job_id = queue.admin.enqueue(photographer_id=a.photographer_id, gallery_id=a.gallery_id)
    expired = token(a.user_id, expires_in=-3600)
    anon = jwt.encode({"role": "anon", "iss": "supabase", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    refused = {
        "no header": ({}, "missing Authorization"),
        "not bearer": ({"Authorization": f"Basic {KEY}"}, "Bearer"),
        "garbage": (bearer("not-a-token"), "invalid token"),
        "other secret": (bearer(token(a.user_id, secret="another-projects-secret-0123456789abcdef")), "invalid token"),
        "expired": (bearer(expired), "expired; sign in again"),
        "anon key": (bearer(anon), "invalid token"),
        "not a user": (bearer(token(a.user_id, aud="service")), "aud must be 'authenticated'"),
        "key, one letter off": (bearer(KEY[:-1] + "x"), "invalid token"),
    }
    body = {"gallery_id": a.gallery_id, "photo_id": a.photo_ids[0], "style_profile_id": a.style_id}
    for method, template in ROUTES:
        path = template.format(job=job_id, style=a.style_id)
        for case, (headers, message) in refused.items():
            r = api.request(method, path, json=body if method == "POST" else None, headers=headers)
            assert r.status_code == 401, (path, case, r.text)
            assert message in r.json()["message"], (path, case)
            assert r.headers["WWW-Authenticate"] == "Bearer"
        # A body of the wrong shape from an unauthenticated caller is refused for who it is, not for its shape.
        if method == "POST":
            assert api.request(method, path, json={"gallery_id": 1}).status_code == 401
    assert len(jobs(queue)) == 1


def test_a_signed_in_user_without_a_photographer_is_refused(api: TestClient, queue: Queue, a: Studio) -> None:
    r = api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=bearer(token(str(uuid.uuid4()))))
    assert r.status_code == 403 and "no photographer account" in r.json()["message"]
    assert jobs(queue) == []


def test_the_key_in_the_path_or_the_header_acts_for_any_photographer(
    api: TestClient, queue: Queue, a: Studio, b: Studio
) -> None:
    r = api.post(f"/{KEY}/api/process/gallery", json={"gallery_id": a.gallery_id})
    assert r.status_code == 200, r.text
    r = api.post("/api/process/gallery", json={"gallery_id": b.gallery_id}, headers=bearer(KEY))
    assert r.status_code == 200, r.text
    status = api.get(f"/{KEY}/api/process/status/{r.json()['job_id']}")
    assert status.status_code == 200 and status.json()["status"] == "queued"
    wrong = api.post(f"/{KEY[:-1]}x/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=bearer(KEY))
    assert wrong.status_code == 401
    assert sorted(str(j["photographer_id"]) for j in jobs(queue)) == sorted([a.photographer_id, b.photographer_id])


def test_without_a_key_configured_the_path_is_not_a_way_in(db_url: str, a: Studio) -> None:
    settings = Settings(supabase_jwt_secret=SECRET, worker_id="api-test")
    with TestClient(create_app(db_url, settings)) as client:
        assert client.post(f"/{KEY}/api/process/gallery", json={"gallery_id": a.gallery_id}).status_code == 404
        assert (
            client.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=bearer(KEY)).status_code
            == 401
        )
        r = client.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=as_user(a))
        assert r.status_code == 200, r.text


def test_photographer_b_cannot_touch_a_s_rows(api: TestClient, queue: Queue, a: Studio, b: Studio) -> None:
    job_id = api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=as_user(a)).json()["job_id"]
    as_b = as_user(b)
    attempts = [
        ("POST", "/api/process/gallery", {"gallery_id": a.gallery_id}),
        ("POST", "/api/process/gallery", {"gallery_id": b.gallery_id, "style_profile_id": a.style_id}),
        ("GET", f"/api/process/status/{job_id}", None),
        ("POST", "/api/process/restyle", {"photo_id": a.photo_ids[0], "style_profile_id": b.style_id}),
        ("POST", "/api/process/restyle", {"photo_id": b.photo_ids[0], "style_profile_id": a.style_id}),
        ("GET", f"/api/style/{a.style_id}/status", None),
        ("POST", f"/api/style/{a.style_id}/retrain", None),
    ]
    for method, path, body in attempts:
        r = api.request(method, path, json=body, headers=as_b)
        assert r.status_code == 404, (path, body, r.text)  # as if it did not exist
    create = {"photographer_id": a.photographer_id, "name": "Stolen", "reference_image_keys": [a.key("x.jpg")]}
    assert api.post("/api/style/create", json=create, headers=as_b).status_code == 403
    assert [str(j["id"]) for j in jobs(queue)] == [job_id]


def test_tokens_and_keys_never_reach_the_log(api: TestClient, a: Studio, capsys: pytest.CaptureFixture[str]) -> None:
    user_token = token(a.user_id)
    api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=bearer(user_token))
    api.post(f"/{KEY}/api/process/gallery", json={"gallery_id": a.gallery_id})
    api.post("/api/process/gallery", json={"gallery_id": a.gallery_id}, headers=bearer(KEY))
    api.get("/api/process/status/x", headers=bearer(user_token[:-2]))
    logged = capsys.readouterr()
    assert "api_request" in logged.err
    for secret in (user_token, user_token[:-2], KEY, SECRET):
        assert secret not in logged.err and secret not in logged.out


# -- the service --------------------------------------------------------------------------------------
def test_health_and_a_database_that_is_down(api: TestClient) -> None:
    assert api.get("/health").json()["status"] == "healthy"
    settings = Settings(api_key=KEY, worker_id="api-test")
    with TestClient(create_app("postgresql://nobody@127.0.0.1:1/none", settings)) as down:
        r = down.post("/api/process/gallery", json={"gallery_id": str(uuid.uuid4())}, headers=bearer(KEY))
        assert r.status_code == 503 and r.json()["message"] == "the database is unreachable; try again shortly"
        assert down.get("/health").status_code == 503


def test_only_the_old_engine_routes_exist(api: TestClient) -> None:
    for path in ("/docs", "/openapi.json", "/redoc", "/api/process/single/x", "/api/style/train"):
        assert api.get(path, headers=bearer(KEY)).status_code in (404, 405), path
