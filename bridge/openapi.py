"""``/openapi.json`` that lists every answer an operation can give, not only its successes.

quart-schema documents what the routes declare; this provider adds what every route of
a kind shares, so that a new route is documented truthfully without repeating them:

* operations that need credentials: 401, 429, 500 and 503 (``internal_error`` /
  ``unavailable`` in the §6 error shape), and 403 where ``admin_only`` marks them;
* operations with a body: 413 (over ``MAX_BODY_BYTES``) and 422, and the body is
  required; operations with a query: 422;
* ``text_response`` routes (``/metrics``): their 200 and media type;
* ``no_content`` routes: their 204 without a body; ``optional_body`` routes: a body
  that may be left out (then every field takes its default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from bridge.schemas import Error

F = TypeVar("F", bound=Callable[..., Any])

_ADMIN_ONLY: Final = "_tidings_admin_only"
_TEXT_RESPONSE: Final = "_tidings_text_response"
_NO_CONTENT: Final = "_tidings_no_content"
_OPTIONAL_BODY: Final = "_tidings_optional_body"

ERROR_STATUSES: Final[dict[int, str]] = {
    401: "No valid credentials (`unauthorized`).",
    403: "The caller may not do this (`forbidden`).",
    413: "The body is larger than the server accepts.",
    422: "A bad body or query (`invalid_request`); `field` names the field at fault.",
    429: "Too many requests (`rate_limited`).",
    500: "A fault of the server (`internal_error`).",
    503: "The notification engine is unavailable (`unavailable`); retry later.",
}


def admin_only(func: F) -> F:
    """Mark an operation of the admin surface: callers without the admin role get 403."""
    setattr(func, _ADMIN_ONLY, True)
    return func


def is_admin_only(func: Callable[..., Any] | None) -> bool:
    """Whether ``func`` was marked with ``admin_only``."""
    return bool(getattr(func, _ADMIN_ONLY, False))


def text_response(media_type: str) -> Callable[[F], F]:
    """Document an operation whose 200 answer is text of ``media_type`` (not JSON)."""

    def mark(func: F) -> F:
        setattr(func, _TEXT_RESPONSE, media_type)
        return func

    return mark


def no_content(func: F) -> F:
    """Document an operation whose success is 204 with no body."""
    setattr(func, _NO_CONTENT, True)
    return func


def optional_body(func: F) -> F:
    """Document an operation whose JSON body may be left out."""
    setattr(func, _OPTIONAL_BODY, True)
    return func


class TidingsOpenAPI(OpenAPIProvider):
    """quart-schema's provider, completing each operation's list of answers."""

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        error_object, error_components = self.build_response_object(Error, None)
        components.update(error_components)
        for operations in paths.values():
            for method, operation in operations.items():
                operations[method] = self._complete(dict(operation), func, error_object)
        return paths, components

    @staticmethod
    def _complete(
        operation: dict[str, Any], func: Callable[..., Any], error_object: dict[str, Any]
    ) -> dict[str, Any]:
        responses: dict[Any, Any] = dict(operation.get("responses", {}))
        if media_type := getattr(func, _TEXT_RESPONSE, None):
            responses.setdefault(
                200, {"description": "", "content": {media_type: {"schema": {"type": "string"}}}}
            )
        if getattr(func, _NO_CONTENT, False):
            responses.setdefault(204, {"description": "Done; no body."})
        statuses: set[int] = set()
        if operation.get("security") != []:
            statuses |= {401, 429, 500, 503}
            if is_admin_only(func):
                statuses.add(403)
        if "requestBody" in operation:
            required = not getattr(func, _OPTIONAL_BODY, False)
            operation["requestBody"] = {**operation["requestBody"], "required": required}
            statuses |= {413, 422}
        if any(p.get("in") == "query" for p in operation.get("parameters", ())):
            statuses.add(422)
        documented = {int(status) for status in responses}
        for status in sorted(statuses - documented):
            responses[status] = {**error_object, "description": ERROR_STATUSES[status]}
        operation["responses"] = dict(sorted(responses.items(), key=lambda item: int(item[0])))
        return operation
