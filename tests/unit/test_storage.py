"""Storage: LocalStorage never escapes its root; SupabaseStorage against a local Storage server with faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_supabase import FakeSupabase, StoredObject
from worker.errors import MissingObjectError, StorageError, TenantViolationError, TransientStorageError
from worker.service import notify
from worker.storage.base import check_tenant_key, validate_key
from worker.storage.local import LocalStorage
from worker.storage.supabase import SupabaseStorage

BAD_KEYS = ["", "../etc/passwd", "a/../../b", "/abs/key", "a//b", "a/./b", "nul\x00byte", "back\\slash"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected(key: str) -> None:
    with pytest.raises(StorageError):
        validate_key(key)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_storage_never_leaves_its_root(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "root")
    (tmp_path / "secret").write_text("s")
    with pytest.raises(StorageError):
        storage.get(key)
    with pytest.raises(StorageError):
        storage.put(key, b"x", "image/jpeg")


def test_local_storage_follows_no_symlink_out(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("secret")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(StorageError, match="escapes"):
        storage.get("link/f")


def test_local_storage_round_trip(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("p/g/edited/a.jpg", b"abc", "image/jpeg")
    storage.put("p/g/web/a.jpg", b"de", "image/jpeg")
    assert storage.get("p/g/edited/a.jpg") == b"abc"
    assert storage.exists("p/g/web/a.jpg") and not storage.exists("p/g/web/b.jpg")
    assert storage.list("p/g") == ["p/g/edited/a.jpg", "p/g/web/a.jpg"]
    storage.delete("p/g/web/a.jpg")
    assert storage.list("p") == ["p/g/edited/a.jpg"]
    with pytest.raises(MissingObjectError):
        storage.get("p/g/web/a.jpg")


def test_tenant_check() -> None:
    pid = "1f0e4c1a-0000-4000-8000-000000000001"
    assert check_tenant_key(f"{pid}/g/uploads/a.jpg", pid)
    for key in [f"other/{pid}/a.jpg", f"{pid}", f"{pid}x/g/a.jpg", f"{pid}/../other/a.jpg", None, ""]:
        with pytest.raises(TenantViolationError):
            check_tenant_key(key, pid)


@pytest.fixture
def fake() -> Iterator[FakeSupabase]:
    with FakeSupabase() as server:
        yield server


def make(fake: FakeSupabase, **kw: float) -> SupabaseStorage:
    return SupabaseStorage(fake.url, fake.key, fake.bucket, backoff_s=0.01, **kw)  # type: ignore[arg-type]


def test_supabase_round_trip_with_content_types_and_upsert(fake: FakeSupabase) -> None:
    storage = make(fake)
    storage.put("p/g/edited/a.jpg", b"jpeg-1", "image/jpeg")
    storage.put("p/g/edited/a.jpg", b"jpeg-2", "image/jpeg")  # a second upload overwrites (no 409)
    storage.put("p/g/thumbs/a.jpg", b"t", "image/jpeg")
    assert fake.state.objects["p/g/edited/a.jpg"].content_type == "image/jpeg"
    assert fake.state.objects["p/g/edited/a.jpg"].cache_control == "3600"
    assert storage.get("p/g/edited/a.jpg") == b"jpeg-2"
    assert storage.exists("p/g/thumbs/a.jpg") and not storage.exists("p/g/thumbs/b.jpg")
    assert storage.list("p") == ["p/g/edited/a.jpg", "p/g/thumbs/a.jpg"]
    storage.delete("p/g/thumbs/a.jpg")
    assert storage.list("p/g") == ["p/g/edited/a.jpg"]
    with pytest.raises(MissingObjectError, match="not in storage"):
        storage.get("p/g/nope.jpg")
    storage.close()


def test_supabase_retries_5xx_429_and_timeouts(fake: FakeSupabase) -> None:
    storage = make(fake, timeout_s=1.0)
    fake.state.timeout_sleep_s = 2.0
    fake.state.faults = ["500", "503", "429", "timeout"]
    storage.put("p/a.jpg", b"data", "image/jpeg")
    assert fake.state.objects["p/a.jpg"].data == b"data"
    assert len([r for r in fake.state.requests if r[0] == "POST"]) == 5
    fake.state.faults = ["502"]
    assert storage.get("p/a.jpg") == b"data"
    storage.close()


def test_supabase_gives_up_after_its_retries_with_a_retryable_error(fake: FakeSupabase) -> None:
    storage = make(fake, retries=2)
    fake.state.faults = ["500"] * 10
    with pytest.raises(TransientStorageError, match="after 2 retries"):
        storage.put("p/a.jpg", b"data", "image/jpeg")
    assert len(fake.state.requests) == 3
    storage.close()


def test_supabase_never_retries_4xx(fake: FakeSupabase) -> None:
    storage = SupabaseStorage(fake.url, "wrong-key", fake.bucket, backoff_s=0.01)
    with pytest.raises(StorageError, match="SUPABASE_SERVICE_ROLE_KEY") as info:
        storage.put("p/a.jpg", b"data", "image/jpeg")
    assert not isinstance(info.value, TransientStorageError)
    assert len(fake.state.requests) == 1
    storage.close()


def test_supabase_large_files_use_resumable_uploads_and_survive_a_dropped_chunk(fake: FakeSupabase) -> None:
    storage = make(fake)
    data = bytes(range(256)) * (60 * 1024)  # 15 MB: three 6 MB chunks
    fake.state.faults = [None, None, "503"]  # the second PATCH fails once; the upload resumes
    storage.put("p/g/edited/big.jpg", data, "image/jpeg")
    stored = fake.state.objects["p/g/edited/big.jpg"]
    assert stored.data == data and stored.content_type == "image/jpeg"
    methods = [m for m, _ in fake.state.requests]
    assert methods.count("POST") == 1 and methods.count("HEAD") == 1 and methods.count("PATCH") == 4
    storage.close()


def test_an_upload_whose_last_answer_was_lost_is_not_sent_again(fake: FakeSupabase) -> None:
    """The server kept the last chunk but its answer never came: asking where it stopped ends the upload."""
    storage = make(fake)
    data = bytes(range(256)) * (60 * 1024)  # three chunks
    fake.state.faults = [None, None, None, "lost"]
    storage.put("p/g/edited/big.jpg", data, "image/jpeg")
    assert fake.state.objects["p/g/edited/big.jpg"].data == data
    assert [m for m, _ in fake.state.requests] == ["POST", "PATCH", "PATCH", "PATCH", "HEAD"]
    storage.close()


def test_every_finished_request_tells_the_watchdog_that_io_moves(
    fake: FakeSupabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watchdog's I/O budget is per request: a 15 MB upload reports its creation and each chunk."""
    finished: list[int] = []
    monkeypatch.setattr(notify, "transferred", lambda: finished.append(len(fake.state.requests)))
    storage = make(fake)
    storage.put("p/g/edited/big.jpg", bytes(range(256)) * (60 * 1024), "image/jpeg")
    assert finished == [1, 2, 3, 4]  # POST, then three PATCHes
    fake.state.faults = ["503"] * 20
    with pytest.raises(TransientStorageError):
        storage.get("p/g/edited/big.jpg")
    assert len(finished) == 4  # a request that never finished is no sign of moving I/O
    storage.close()


def test_a_chunk_that_keeps_failing_gives_up_after_the_retries_without_starting_over(fake: FakeSupabase) -> None:
    """One backoff policy per request: the upload is not restarted from byte 0 by an outer retry."""
    storage = make(fake, retries=2)
    data = bytes(range(256)) * (60 * 1024)
    fake.state.faults = [None, None, *["503"] * 20]
    with pytest.raises(TransientStorageError, match="after 2 retries"):
        storage.put("p/g/edited/big.jpg", data, "image/jpeg")
    methods = [m for m, _ in fake.state.requests]
    assert methods.count("POST") == 1 and len(methods) == 2 + 3  # create, one chunk, then 3 tries
    storage.close()


def test_a_large_file_overwrites_an_existing_one(fake: FakeSupabase) -> None:
    """Storage reads ``x-upsert`` on every resumable request: a PATCH without it over an existing key is a 409."""
    storage = make(fake)
    first, second = bytes(range(256)) * (30 * 1024), bytes(range(255, -1, -1)) * (30 * 1024)  # 7.5 MB: two chunks
    storage.put("p/g/edited/big.jpg", first, "image/jpeg")
    storage.put("p/g/edited/big.jpg", second, "image/jpeg")  # a restyle writes the same key again
    assert fake.state.objects["p/g/edited/big.jpg"].data == second
    storage.close()


def test_a_resumed_upload_over_an_existing_file_finishes(fake: FakeSupabase) -> None:
    """A retried photo whose large output is already there: the chunk sent again after a failure carries upsert too."""
    storage = make(fake)
    data = bytes(range(256)) * (60 * 1024)  # three chunks
    fake.state.objects["p/g/edited/big.jpg"] = StoredObject(b"uploaded by the first attempt", "image/jpeg")
    fake.state.faults = [None, None, "503"]  # the second PATCH fails once; a HEAD, then the chunk again
    storage.put("p/g/edited/big.jpg", data, "image/jpeg")
    assert fake.state.objects["p/g/edited/big.jpg"].data == data
    assert [m for m, _ in fake.state.requests] == ["POST", "PATCH", "PATCH", "HEAD", "PATCH", "PATCH"]
    storage.close()


def test_the_fake_wants_upsert_on_each_resumable_request_as_storage_does(fake: FakeSupabase) -> None:
    """The fake's own rule, so that the tests above can fail: POST and PATCH are checked on their own, HEAD never."""
    import httpx

    fake.state.objects["p/a.jpg"] = StoredObject(b"x", "image/jpeg")
    endpoint = f"{fake.url}/storage/v1/upload/resumable"
    auth = {"Authorization": f"Bearer {fake.key}", "Tus-Resumable": "1.0.0"}
    meta = "bucketName cGhvdG9z,objectName cC9hLmpwZw==,contentType aW1hZ2UvanBlZw=="  # photos, p/a.jpg, image/jpeg
    create = {**auth, "Upload-Length": "3", "Upload-Metadata": meta}
    assert httpx.post(endpoint, headers=create).status_code == 409
    created = httpx.post(endpoint, headers={**create, "x-upsert": "true"})
    assert created.status_code == 201
    patch = {**auth, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    location = fake.url + created.headers["Location"]
    refused = httpx.patch(location, content=b"abc", headers=patch)
    assert refused.status_code == 409 and refused.text == "The resource already exists"
    assert httpx.head(location, headers=auth).headers["Upload-Offset"] == "0"  # HEAD is never checked
    assert httpx.patch(location, content=b"abc", headers={**patch, "x-upsert": "true"}).status_code == 204
    assert fake.state.objects["p/a.jpg"].data == b"abc"


def test_a_bucket_that_takes_images_only_refuses_other_types_with_its_reason(fake: FakeSupabase) -> None:
    """The app's bucket has an allowed_mime_types list: both upload routes refuse text/plain and say why."""
    fake.state.allowed_mime_types = ["image/jpeg", "image/png"]
    storage = make(fake)
    with pytest.raises(StorageError, match="mime type text/plain is not supported") as info:
        storage.put("p/b.txt", b"ok", "text/plain")
    assert not isinstance(info.value, TransientStorageError)
    with pytest.raises(StorageError, match="mime type text/plain is not supported"):
        storage.put("p/b.txt", b"o" * (7 * 1024 * 1024), "text/plain")  # resumable: refused at its POST
    storage.put("p/b.jpg", b"ok", "image/jpeg")
    assert sorted(fake.state.objects) == ["p/b.jpg"]
    storage.close()
