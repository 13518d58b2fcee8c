"""A local HTTP server speaking the Supabase Storage REST routes storage3 and the worker use.

Routes (under ``/storage/v1``): object upload (POST) and update (PUT) as multipart with
``x-upsert``, download (GET), info (GET ``object/info``), list (POST ``object/list``), remove
(DELETE ``object/{bucket}`` with ``prefixes``), and resumable (TUS 1.0.0) uploads. Errors come back
the way Supabase sends them: the REST routes answer HTTP 400 with ``statusCode`` in the JSON body,
the resumable routes the real status with the message as text. ``faults`` injects failures: each
request pops the next entry (``"500"``, ``"503"``, ``"429"``, ``"timeout"``, ``None``, or ``"lost"``:
the request is carried out but its answer is a 503, as when the response is lost).

Like the real bucket it can refuse content types (``allowed_mime_types``: ``"image/jpeg"`` or
``"image/*"`` entries; ``None`` allows all): the REST upload checks the file part's type, the
resumable upload the ``contentType`` of its creating POST.

``x-upsert`` on resumable uploads, as Supabase Storage v1.26.5 reads it (``src/http/routes/tus/``:
``index.ts`` and ``lifecycle.ts``, on ``@tus/server`` 2.2.1): every resumable route takes
``x-upsert: true`` from *that* request, not from the upload it belongs to. The TUS server's
``onIncomingRequest`` hook runs on the creating POST, on every PATCH, and on DELETE and GET; for
all but HEAD and OPTIONS (which it lets through unchecked) it asks whether the object row may be
written — upserted with ``x-upsert``, inserted without it, and that test insert fails with
``409 The resource already exists`` when the key is already there. So a PATCH without ``x-upsert``
over an existing object is refused even though its POST carried it. Finishing an upload (the last
PATCH) always upserts. This fake checks POST and PATCH (it has no resumable DELETE or GET) and lets
HEAD through.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    cache_control: str | None = None


@dataclass
class FakeState:
    key: str
    bucket: str
    objects: dict[str, StoredObject] = field(default_factory=dict)
    faults: list[str | None] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)  # TUS sessions
    allowed_mime_types: list[str] | None = None  # the bucket's list; None allows every type
    timeout_sleep_s: float = 3.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    lost = False  # this request's answer is "lost" (see faults)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def state(self) -> FakeState:
        return self.server.state

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _error(self, code: int, error: str, message: str) -> None:
        # Supabase answers 400 and puts the real status in the body.
        http = 400 if code in (404, 409, 403) else code
        self._json(http, {"statusCode": str(code), "error": error, "message": message})

    def _mime_allowed(self, mime: str) -> bool:
        """The bucket's ``allowed_mime_types``: an exact ``type/subtype`` or a ``type/*`` entry."""
        allowed = self.state.allowed_mime_types
        if allowed is None:
            return True
        kind, _, sub = mime.partition("/")
        return any(entry in (f"{kind}/*", f"{kind}/{sub}") for entry in allowed) and bool(sub)

    def _tus_refused(self, key: str) -> bool:
        """A resumable request without its own ``x-upsert`` over an existing key: 409, as Storage does."""
        if self.headers.get("x-upsert") == "true" or key not in self.state.objects:
            return False
        self._send(409, b"The resource already exists", "text/plain")
        return True

    def _prelude(self) -> str | None:
        """Auth and fault injection; returns the path under /storage/v1 or None if answered."""
        path = unquote(urlparse(self.path).path)
        with self.state.lock:
            self.state.requests.append((self.command, path))
            fault = self.state.faults.pop(0) if self.state.faults else None
        self.lost = fault == "lost"
        if fault == "lost":
            fault = None
        if fault == "timeout":
            self._body()
            time.sleep(self.state.timeout_sleep_s)
            self._error(504, "timeout", "gateway timeout")
            return None
        if fault is not None:
            self._body()
            self._error(int(fault), "injected", f"injected {fault}")
            return None
        if self.headers.get("Authorization") != f"Bearer {self.state.key}":
            self._body()
            self._error(403, "Unauthorized", "invalid signature")
            return None
        prefix = "/storage/v1/"
        return path[len(prefix) :] if path.startswith(prefix) else path

    # -- routes -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self._prelude()
        if path is None:
            return
        parts = path.split("/")
        if parts[:2] == ["object", "info"]:
            obj = self.state.objects.get("/".join(parts[3:]))
            if obj is None:
                self._error(404, "not_found", "Object not found")
            else:
                self._json(200, {"name": parts[-1], "size": len(obj.data), "content_type": obj.content_type})
            return
        if parts[0] == "object" and parts[1] == self.state.bucket:
            obj = self.state.objects.get("/".join(parts[2:]))
            if obj is None:
                self._error(404, "not_found", "Object not found")
            else:
                self._send(200, obj.data, obj.content_type)
            return
        self._error(404, "not_found", "no route")

    def do_POST(self) -> None:
        path = self._prelude()
        if path is None:
            return
        parts = path.split("/")
        body = self._body()
        if parts[:2] == ["object", "list"]:
            self._list(json.loads(body or b"{}"))
            return
        if parts[:2] == ["upload", "resumable"] and len(parts) == 2:
            self._tus_create()
            return
        if parts[0] == "object" and parts[1] == self.state.bucket:
            self._upload("/".join(parts[2:]), body, upsert=self.headers.get("x-upsert") == "true")
            return
        self._error(404, "not_found", "no route")

    def do_PUT(self) -> None:
        path = self._prelude()
        if path is None:
            return
        parts = path.split("/")
        body = self._body()
        key = "/".join(parts[2:])
        if key not in self.state.objects:
            self._error(404, "not_found", "Object not found")
            return
        self._upload(key, body, upsert=True)

    def do_DELETE(self) -> None:
        path = self._prelude()
        if path is None:
            return
        body = json.loads(self._body() or b"{}")
        removed = []
        with self.state.lock:
            for key in body.get("prefixes", []):
                if self.state.objects.pop(key, None) is not None:
                    removed.append({"name": key})
        self._json(200, removed)

    def do_PATCH(self) -> None:
        path = self._prelude()
        if path is None:
            return
        upload_id = path.split("/")[-1]
        session = self.state.uploads.get(upload_id)
        body = self._body()
        if session is None:
            self._send(404)
            return
        if self._tus_refused(session["meta"]["objectName"]):
            return
        offset = int(self.headers.get("Upload-Offset", "-1"))
        if offset != len(session["data"]):
            self._send(409, Upload_Offset=str(len(session["data"])))
            return
        session["data"] += body
        if len(session["data"]) >= session["length"]:
            meta = session["meta"]
            self.state.objects[meta["objectName"]] = StoredObject(
                bytes(session["data"]), meta.get("contentType", "application/octet-stream"), meta.get("cacheControl")
            )
        if self.lost:
            self._error(503, "injected", "the chunk was stored, its answer lost")
            return
        self._send(204, Upload_Offset=str(len(session["data"])), Tus_Resumable="1.0.0")

    def do_HEAD(self) -> None:
        path = self._prelude()
        if path is None:
            return
        session = self.state.uploads.get(path.split("/")[-1])
        if session is None:
            self._send(404)
            return
        self._send(200, Upload_Offset=str(len(session["data"])), Upload_Length=str(session["length"]))

    # -- helpers ----------------------------------------------------------------------------
    def _upload(self, key: str, body: bytes, *, upsert: bool) -> None:
        content_type = self.headers.get("Content-Type", "")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        file_part = None
        cache_control = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                file_part = part
            elif name == "cacheControl":
                cache_control = part.get_content()
        if file_part is None:
            self._error(400, "invalid", "no file part")
            return
        if not self._mime_allowed(file_part.get_content_type()):
            self._error(400, "InvalidRequest", f"mime type {file_part.get_content_type()} is not supported")
            return
        with self.state.lock:
            if key in self.state.objects and not upsert:
                self._error(409, "Duplicate", "The resource already exists")
                return
            payload = file_part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            self.state.objects[key] = StoredObject(payload, file_part.get_content_type(), cache_control)
        self._json(200, {"Key": f"{self.state.bucket}/{key}", "Id": str(uuid.uuid4())})

    def _list(self, body: dict[str, Any]) -> None:
        prefix = str(body.get("prefix") or "").strip("/")
        limit, offset = int(body.get("limit", 100)), int(body.get("offset", 0))
        entries: dict[str, dict[str, Any]] = {}
        for key in sorted(self.state.objects):
            if prefix and not key.startswith(prefix + "/"):
                continue
            rest = key[len(prefix) + 1 :] if prefix else key
            head, sep, _ = rest.partition("/")
            if sep:
                entries.setdefault(head, {"name": head, "id": None, "metadata": None})
            else:
                entries[head] = {"name": head, "id": str(uuid.uuid4()), "metadata": {"size": 1}}
        page = list(entries.values())[offset : offset + limit]
        self._json(200, page)

    def _tus_create(self) -> None:
        meta = {}
        for item in (self.headers.get("Upload-Metadata") or "").split(","):
            name, _, value = item.strip().partition(" ")
            meta[name] = base64.b64decode(value).decode()
        if meta.get("bucketName") != self.state.bucket or not meta.get("objectName"):
            self._error(400, "invalid", "bad metadata")
            return
        if self._tus_refused(meta["objectName"]):
            return
        content_type = meta.get("contentType", "")
        if content_type and not self._mime_allowed(content_type):
            self._send(415, f"mime type {content_type} is not supported".encode(), "text/plain")
            return
        upload_id = uuid.uuid4().hex
        self.state.uploads[upload_id] = {
            "length": int(self.headers["Upload-Length"]),
            "meta": meta,
            "data": bytearray(),
        }
        self._send(201, Location=f"/storage/v1/upload/resumable/{upload_id}", Tus_Resumable="1.0.0")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState


class FakeSupabase:
    """``with FakeSupabase() as fake: SupabaseStorage(fake.url, fake.key, fake.bucket)``."""

    def __init__(
        self, key: str = "service-role-key", bucket: str = "photos", *, allowed_mime_types: list[str] | None = None
    ) -> None:
        self.state = FakeState(key=key, bucket=bucket, allowed_mime_types=allowed_mime_types)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def key(self) -> str:
        return self.state.key

    @property
    def bucket(self) -> str:
        return self.state.bucket

    def __enter__(self) -> FakeSupabase:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
