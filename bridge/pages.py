"""The live inbox page (``/``) and the browser client (``/tidings.js``).

Both are static files in ``bridge/static`` (the client is a link to
``clients/browser/tidings.js``, its source; a built package carries a copy).
"""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import hide

pages = Blueprint("pages", __name__)


async def _static(name: str) -> Response:
    response = await current_app.send_static_file(name)
    response.headers["Cache-Control"] = "no-cache"
    return response


@pages.get("/")
@hide
async def inbox() -> Response:
    """The live inbox: ``?user_id=`` (insecure mode) or ``?token=``."""
    return await _static("index.html")


@pages.get("/tidings.js")
@hide
async def client() -> Response:
    """The dependency-free ES module client of the WebSocket protocol."""
    return await _static("tidings.js")
