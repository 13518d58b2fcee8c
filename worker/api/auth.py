"""Who is calling the HTTP API: a signed-in photographer (their Supabase access token) or the app's server
(the shared key). The old engine had no authentication; what the app must send: docs/app.md.

Three ways in, checked in this order:

* the shared key ``WORKER_API_KEY`` as the first segment of the path (``AI_ENGINE_URL`` set to
  ``https://host/<key>``: the app unchanged), or
* ``Authorization: Bearer <WORKER_API_KEY>`` — both compared in constant time; the caller is the app's
  server, trusted to act for any photographer (it says which: the gallery's, the profile's, the body's
  ``photographer_id``);
* ``Authorization: Bearer <a user's Supabase access token>`` — an HS256 JWT signed with the project's
  JWT secret (``SUPABASE_JWT_SECRET``), ``aud = authenticated``, not expired; its ``sub`` is the
  ``auth.uid()`` that the app's RLS compares with ``photographers.auth_user_id``. Such a caller acts
  only for that photographer.

Tokens and keys are never logged, and no message repeats them.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

import jwt

from worker.errors import RequestError

AUDIENCE = "authenticated"  # what Supabase Auth puts in a signed-in user's access token
LEEWAY_S = 30  # clock skew between Supabase Auth and this box


@dataclass(frozen=True)
class Caller:
    """The app's server (``user_id`` None: it may act for any photographer), or one signed-in user."""

    user_id: str | None = None

    @property
    def is_app_server(self) -> bool:
        return self.user_id is None

    @property
    def kind(self) -> str:
        """For logs: ``key`` or ``user`` (never the token)."""
        return "key" if self.user_id is None else "user"


APP_SERVER = Caller()


class Authenticator:
    """Checks the path key or the ``Authorization`` header against the configured key and JWT secret."""

    def __init__(self, *, api_key: str | None, jwt_secret: str | None) -> None:
        if not api_key and not jwt_secret:
            raise ValueError("an Authenticator needs an API key, a JWT secret, or both")
        self._key = api_key.encode() if api_key else None
        self._secret = jwt_secret

    def path_key(self, segment: str) -> Caller:
        """The caller for a request whose path starts with ``/<segment>/``."""
        if self._key is None or not hmac.compare_digest(segment.encode(), self._key):
            raise RequestError(401, "wrong API key in the path; set AI_ENGINE_URL to https://HOST/WORKER_API_KEY")
        return APP_SERVER

    def header(self, authorization: str | None) -> Caller:
        """The caller an ``Authorization`` header names; refused (401) when it names nobody."""
        if not authorization:
            raise RequestError(401, "missing Authorization: Bearer token (a user's access token or the API key)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise RequestError(401, "the Authorization header must be 'Bearer <token>'")
        if self._key is not None and hmac.compare_digest(token.encode(), self._key):
            return APP_SERVER
        if self._secret is None:
            raise RequestError(401, "wrong API key")
        return Caller(user_id=self._user_id(token))

    def _user_id(self, token: str) -> str:
        assert self._secret is not None
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                leeway=LEEWAY_S,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise RequestError(401, "the access token has expired; sign in again") from None
        except jwt.InvalidAudienceError:
            raise RequestError(401, "the token is not a signed-in user's (aud must be 'authenticated')") from None
        except jwt.InvalidTokenError:
            raise RequestError(
                401, "invalid token: not the API key, nor an access token signed with this project's JWT secret"
            ) from None
        try:
            return str(uuid.UUID(str(claims["sub"])))
        except ValueError:
            raise RequestError(401, "the token's subject is not a user id") from None
