"""`midiarr serve`: a local HTTP API (FastAPI) and a web page for songwriters."""

from midiarr.server.app import Limits, create_app

__all__ = ["Limits", "create_app"]
