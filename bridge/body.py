"""REST request bodies read as strict JSON, with the member at fault named when one is.

Quart's own ``get_json`` decodes the body before its ``try`` (so bytes that are not
UTF-8 are a 500), accepts ``NaN`` and ``Infinity`` (which no browser's ``JSON.parse``
reads back), turns ``1e400`` into infinity, keeps unpaired surrogates (which cannot be
encoded again) and lets deep nesting raise ``RecursionError``. Here a body is UTF-8
JSON text as RFC 8259 defines it, or a ``BodyError``. Integers keep every digit.

The common case costs one ``json.loads``; only a body that fails is read again, member
by member, to find the top-level field to blame (``data`` nested 10 000 deep is a 422
on ``data``, not a 500).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, NoReturn

#: A ``\\uD800``–``\\uDFFF`` escape: the only way an unpaired surrogate gets into a value.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SPACE: Final = re.compile(r"[ \t\n\r]*")


class BodyError(ValueError):
    """A body that is not strict JSON; ``field`` is the top-level member at fault, if known."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _Refused(ValueError):
    """Text the grammar admits (or Python does) but a JSON reader may not: say why."""


def _not_a_number(name: str) -> NoReturn:
    raise _Refused(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refused(f"the number {text[:32]} is out of range")
    return number


_DECODER: Final = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite)


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body, or ``BodyError``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(None, "the body is not UTF-8 text") from None
    try:
        value = _DECODER.decode(text)
        _check_strings(text, value)
    except (ValueError, RecursionError) as exc:
        field = _culprit(text)
        reason = _reason(exc)
        raise BodyError(field, f"{field or 'the body'}: {reason}") from None
    return value


def _check_strings(text: str, value: Any) -> None:
    """Raise ``UnicodeEncodeError`` (a ValueError) if a string of ``value`` cannot be encoded."""
    if _SURROGATE_ESCAPE.search(text):
        json.dumps(value, ensure_ascii=False).encode()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeError):
        return "strings must be valid Unicode (unpaired surrogate)"
    if isinstance(exc, _Refused):
        return str(exc)
    return f"not valid JSON ({exc})"  # the decoder says where


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def _culprit(text: str) -> str | None:
    """The key of the first top-level member whose value cannot be read, if any."""
    pos = _skip_space(text, 0)
    if not text.startswith("{", pos):
        return None
    pos += 1
    while True:
        pos = _skip_space(text, pos)
        if not text.startswith('"', pos):
            return None
        try:
            key, pos = _DECODER.raw_decode(text, pos)
        except ValueError:
            return None
        if not isinstance(key, str):
            return None
        pos = _skip_space(text, pos)
        if not text.startswith(":", pos):
            return None
        start = _skip_space(text, pos + 1)
        try:
            value, pos = _DECODER.raw_decode(text, start)
            _check_strings(text[start:pos], value)
        except (ValueError, RecursionError):
            return key
        pos = _skip_space(text, pos)
        if not text.startswith(",", pos):
            return None
        pos += 1
