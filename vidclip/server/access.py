"""Who may talk to `vidclip serve`.

- It binds to 127.0.0.1 by default.  Any other host must be asked for (`--host`) and needs a
  token (`--token` or VIDCLIP_SERVE_TOKEN); without one the server refuses to start.
- With a token, every request must carry it: `Authorization: Bearer TOKEN`, or the `vidclip_token`
  cookie the page sets when it is opened once as `/?token=TOKEN` (so the browser's <img> and
  <video> requests carry it too).  Anything else is 401, compared in constant time.
- On loopback, requests must name a loopback Host (localhost, 127.0.0.1, [::1]): a web page
  elsewhere cannot reach the server through DNS rebinding.
- No CORS headers are ever sent, so other origins' scripts cannot read the answers.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass, field

from vidclip.errors import InputError

TOKEN_ENV = "VIDCLIP_SERVE_TOKEN"
COOKIE = "vidclip_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = field(default=None, repr=False)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_config(host: str, port: int, token: str | None) -> ServeConfig:
    """The checked settings: a non-loopback host needs a token of at least MIN_TOKEN_CHARS."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be 0-65535, got {port}")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise InputError(f"the token must be at least {MIN_TOKEN_CHARS} characters (e.g. from 'openssl rand -hex 16')")
    if not is_loopback(host) and token is None:
        raise InputError(f"--host {host} would expose the library beyond this machine: give a token with --token or "
                         f"${TOKEN_ENV} (every request must then carry it), or keep the default --host 127.0.0.1")
    return ServeConfig(host=host, port=port, token=token)


class AccessMiddleware:
    """Pure ASGI middleware applying the rules above to every HTTP request."""

    def __init__(self, app, config: ServeConfig):
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.config.loopback and not _loopback_host(headers.get("host", "")):
            return await _refuse(send, 403, "this server answers only to localhost")
        if self.config.token is not None and not self._authorised(scope, headers):
            return await _refuse(send, 401, "a token is needed: open the page as /?token=TOKEN, or send "
                                            "'Authorization: Bearer TOKEN'")
        return await self.app(scope, receive, send)

    def _authorised(self, scope, headers: dict) -> bool:
        want = self.config.token.encode()
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].strip().encode(), want):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), want):
                return True
        if scope.get("path") == "/":  # the page itself may carry it once, and then sets the cookie
            from urllib.parse import parse_qs

            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
            return hmac.compare_digest(given.encode(), want)
        return False


class BodyLimit:
    """Refuse request bodies over `max_bytes`: by their Content-Length before reading (413), and a
    body without one is cut off at the limit (the request then ends as a disconnect)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _refuse(send, 413, f"the request body is over {self.max_bytes // 2**20} MB")
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, limited, send)


def _loopback_host(host_header: str) -> bool:
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if host.startswith("[") and "]" in host:
        host = host[: host.index("]") + 1]
    return is_loopback(host)


async def _refuse(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
