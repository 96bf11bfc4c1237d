"""The bridge's Quart application: WebSocket, REST, the inbox page, OpenAPI.

``create_app`` builds it; resources (the gRPC channel, the draining signal) are made
in ``before_serving`` and kept on the app (``bridge.state``), never in globals.
"""

from __future__ import annotations

from typing import Any, Final

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from quart import Quart, Request, Response, request
from quart_schema import QuartSchema, RequestSchemaValidationError
from quart_schema.openapi import APIKeySecurityScheme, HttpSecurityScheme, Info, Tag
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from bridge.body import BodyError, parse_body
from bridge.fastcreate import FastCreate
from bridge.openapi import TidingsOpenAPI
from bridge.origin import OriginPolicy
from bridge.outcomes import ApiError, http_error_code
from bridge.pages import pages
from bridge.responses import error_response
from bridge.rest import api, caller_refused, ops
from bridge.routing import RoutedQuart
from bridge.state import EXTENSION_KEY, BridgeState
from bridge.ws import sockets
from bridge.wswrite import BatchingWebsocket, BatchingWebsocketConnection
from server.rpc.inprocess import InProcessStubs

#: REST bodies are small; anything larger is refused with 413 before it is read.
MAX_BODY_BYTES: Final = 1 << 20

DESCRIPTION = """\
The browser and operator face of Tidings. Every call is translated onto the gRPC
engine with the caller's credentials: `Authorization: Bearer <jwt>`, or in insecure
development mode `X-Tidings-User: <user id>`. Errors answer
`{"error": {"code", "message", "field"}}` (`field` when one is at fault).

The live stream is the WebSocket `/api/v1/ws/notifications` (query `token`, `since`,
`types`, `user_id`), described in PROTOCOL.md §5 (not expressible in OpenAPI).
"""


class BridgeRequest(Request):
    """A request whose JSON body is read strictly (``bridge.body``): a bad one is a 422."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            return None
        raw = await self.get_data(cache=cache, as_text=False, parse_form_data=False)
        try:
            result = parse_body(raw)
        except BodyError as exc:
            if not silent:
                raise ApiError.invalid(exc.field, exc.message) from None
            result = None
        if cache:
            self._cached_json[silent] = result
        return result


class BridgeApp(RoutedQuart):
    """The bridge's Quart app: creates (``POST /api/v1/notifications``) go through
    ``bridge.fastcreate`` first, which hands Quart whatever it does not answer itself."""

    fast_create: FastCreate | None = None

    async def asgi_app(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if self.fast_create is not None and FastCreate.takes(scope):
            await self.fast_create(scope, receive, send)
        else:
            await super().asgi_app(scope, receive, send)


def _field(error: Exception) -> tuple[str | None, str]:
    """The field a validation error blames, and a message naming it."""
    if isinstance(error, ValidationError) and (errors := error.errors()):
        first = errors[0]
        loc = first.get("loc", ())
        if not loc:
            return None, "the body must be a JSON object"
        field = str(loc[0])
        where = field + "".join(f"[{part}]" for part in loc[1:])
        return field, f"{where}: {first.get('msg', 'is invalid')}"
    return None, "the body must be a JSON object (Content-Type: application/json)"


def create_app(
    upstream: str,
    *,
    allowed_origins: tuple[str, ...] = (),
    max_message_bytes: int = 65536,
    max_session_buffer: int = 1000,
    local: InProcessStubs | None = None,
    registry: CollectorRegistry | None = None,
) -> Quart:
    """The bridge app, talking to the engine at ``upstream`` (``HOST:PORT``); ``local``
    makes its unary calls in-process (the engine runs in this process). Its metrics go
    to ``registry`` (served at ``/metrics``; default: a registry of the app's own)."""
    app = BridgeApp(__name__, static_folder="static", static_url_path="/static")
    app.request_class = BridgeRequest
    app.websocket_class = BatchingWebsocket
    app.asgi_websocket_class = BatchingWebsocketConnection
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    QuartSchema(
        app,
        openapi_provider_class=TidingsOpenAPI,
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # the UIs load scripts from CDNs: not on a closed network
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(title="Tidings", version="1", description=DESCRIPTION),
        tags=[
            Tag(name="notifications", description="producers (admin)"),
            Tag(name="inbox", description="the caller's own notifications"),
            Tag(name="operators", description="live sessions (admin, except own status)"),
            Tag(name="operations", description="liveness and metrics (no credentials)"),
        ],
        security_schemes={
            "bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT"),
            "insecureUser": APIKeySecurityScheme(name="X-Tidings-User", in_="header"),
        },
        security=[{"bearer": []}, {"insecureUser": []}],
    )
    state = BridgeState(
        upstream,
        origins=OriginPolicy(allowed_origins),
        max_message_bytes=max_message_bytes,
        max_session_buffer=max_session_buffer,
        local=local,
        registry=registry,
    )
    app.extensions[EXTENSION_KEY] = state
    app.fast_create = FastCreate(
        state,
        super(BridgeApp, app).asgi_app,
        max_body=MAX_BODY_BYTES,
        body_timeout=app.config["BODY_TIMEOUT"],
        logger=app.logger,
    )
    app.before_serving(state.start)
    app.after_serving(state.stop)

    app.register_blueprint(sockets)
    app.register_blueprint(api)
    app.register_blueprint(ops)
    app.register_blueprint(pages)

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        if (
            error.status in (404, 413, 422)
            and not error.from_engine
            and request.blueprint == api.name
        ):
            # Refused by the bridge itself, before the engine saw the caller: who is
            # calling is answered first (401 / 403 before 404 / 413 / 422).
            error = await caller_refused() or error
        state.metrics.error("http", error.code)
        return error_response(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def invalid_request(error: RequestSchemaValidationError) -> Response:
        field, message = _field(error.validation_error)
        return await api_error(ApiError.invalid(field, message))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            return await api_error(ApiError.not_found("no such resource"))
        if status >= 500:
            # The cause is logged (with its traceback, when it was an exception of ours);
            # the caller learns only that it was not their fault.
            return await api_error(ApiError(status, "internal_error", "internal error"))
        message = error.description or error.name
        if status == 413:
            message = f"the body is larger than {MAX_BODY_BYTES} bytes"
        response = await api_error(ApiError(status, http_error_code(status, error.name), message))
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    return app
