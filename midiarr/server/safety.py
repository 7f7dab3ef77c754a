"""What keeps hostile input from reaching the client or the server unchecked: text cleaned of
control characters before it is echoed back, and request bodies capped while they arrive.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from starlette.exceptions import HTTPException

# Bidirectional overrides and isolates make a name display as something else ("evil\u202egnp.mid").
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def clean_text(text: str, limit: int = 200) -> str:
    """``text`` without control characters (NUL, C0/C1, DEL), lone surrogates or bidi overrides, cut at ``limit``.

    A lone surrogate cannot be encoded as UTF-8, so left in, it would turn the JSON answer into a 500.
    """
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _BIDI)
    return kept if len(kept) <= limit else kept[: limit - 1] + "…"


def clean_filename(name: str | None, default: str = "song.mid") -> str:
    """The last component of a client's file name (``/`` or ``\\`` separated), cleaned; ``default`` if none is left."""
    text = clean_text(name or "", limit=10_000)
    text = PureWindowsPath(PurePosixPath(text).name).name.strip()
    if not text or text in (".", ".."):
        return default
    if text.startswith("."):  # ".mid" left of "\x00.mid": keep the suffix that says the format
        text = Path(default).stem + text
    if len(text) > 120:  # keep the suffix, which decides the format
        suffix = PurePosixPath(text).suffix[:12]
        text = text[: 120 - len(suffix)] + suffix
    return text


class ApiError(HTTPException):
    """An error answered as ``{"error": message, "code": code}`` with its status."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(status_code=status, detail=message)
        self.code = code or CODES.get(status, f"http_{status}")


# The default code of each status; handlers pass a more specific one where it helps a client.
CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "not_ready",
    413: "too_large",
    415: "unsupported_file",
    422: "invalid_value",
    429: "busy",
    500: "internal_error",
}


def error_body(code: str, message: str) -> dict[str, Any]:
    """The one JSON shape of every error the server answers."""
    return {"error": clean_text(message, limit=1000), "code": code}


class BodyLimit:
    """ASGI middleware: a request body over ``limit_for(path)`` bytes is refused with 413.

    A Content-Length over the limit is answered before anything is read; a body without one
    (chunked) is counted as it arrives and stops at the limit, so no handler ever buffers more.
    """

    def __init__(self, app: Any, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status, code = (413, "too_large") if declared.isdigit() else (400, "bad_request")
            message = f"request body over {limit} bytes" if status == 413 else "bad Content-Length header"
            body = json.dumps(error_body(code, message)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # an HTTPException, so the body parsers pass it on instead of making it a 400
                    raise ApiError(413, f"request body over {limit} bytes")
            return message

        await self.app(scope, counted, send)
