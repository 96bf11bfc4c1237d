"""The gRPC metadata of the Tidings contract, named once (docs/PROTOCOL.md §7.2, §7.4).

The engine, the bridge and this SDK all read these names from here. Besides the keys,
the module holds the one reading of the older, textual connect parameters
(``tidings-since`` / ``tidings-types``, and the WebSocket's ``?since=`` / ``?types=``)
as a typed ``ConnectParams``: the engine applies it to ``Connect`` calls that send no
``tidings-connect-params-bin``, the bridge to the WebSocket query.
"""

from __future__ import annotations

from typing import Final

from tidings.v1 import stream_pb2

#: ``Bearer <jwt>`` (secure mode).
AUTHORIZATION: Final = "authorization"
#: The caller's user id, insecure mode only.
USER: Final = "x-tidings-user"
#: ``Connect``: resume after this id (the textual form).
SINCE: Final = "tidings-since"
#: ``Connect``: the initial filter, "only these types", comma-separated (the textual form).
TYPES: Final = "tidings-types"
#: ``Connect``: a serialized ``tidings.v1.ConnectParams``; wins over ``SINCE`` and ``TYPES``.
CONNECT_PARAMS: Final = "tidings-connect-params-bin"
#: Trailer of a failed call: the docs/PROTOCOL.md §5.5 error code.
ERROR_CODE: Final = "tidings-error-code"
#: Trailer of an ``INVALID_ARGUMENT``: the field at fault.
ERROR_FIELD: Final = "tidings-error-field"

#: The largest ``since`` (an int64 notification id).
SINCE_MAX: Final = (1 << 63) - 1


class BadParams(ValueError):
    """Connect parameters that cannot be read; ``field`` names the one at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def params_from_text(since: str | None, types: str | None) -> stream_pb2.ConnectParams:
    """``ConnectParams`` from the textual parameters (raises ``BadParams``).

    ``since`` is a non-negative integer, empty or absent for none. ``types`` is a comma
    list, blanks around names ignored: "only these types"; empty or absent means every
    type (the textual form cannot say "none").
    """
    params = stream_pb2.ConnectParams()
    if since:
        if not since.isascii() or not since.isdigit() or int(since) > SINCE_MAX:
            raise BadParams("since", "must be a non-negative integer")
        params.since = int(since)
    names = [t.strip() for t in types.split(",")] if types else []
    if any(names):
        params.filter.mode = stream_pb2.FILTER_MODE_ONLY
        params.filter.notification_types.extend(t for t in names if t)
    return params


def decode_params(value: bytes) -> stream_pb2.ConnectParams:
    """A ``tidings-connect-params-bin`` value (raises ``BadParams``)."""
    try:
        return stream_pb2.ConnectParams.FromString(value)
    except Exception as exc:  # protobuf raises DecodeError, or ValueError on bad UTF-8
        raise BadParams("connect_params", "is not a serialized ConnectParams") from exc
