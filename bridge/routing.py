"""URL matching without a reference cycle per request.

werkzeug's ``StateMachineMatcher.match`` defines a recursive closure on every call (the
function and its cell point at each other), so every HTTP request and WebSocket
handshake leaves 8–9 objects that only the cyclic garbage collector frees: that garbage
is what fills the young generation under REST traffic, and each collection is a pause
of the event loop. ``StaticRouteMatcher`` remembers the answer for paths that match a rule
without converter values (``/api/v1/notifications``, ``/ws``, ``/healthz``: a bounded
set, one entry per static rule and method) and asks werkzeug for the rest: it is the
same matcher, with a memory.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from quart import Quart
from werkzeug.routing import Rule
from werkzeug.routing.matcher import StateMachineMatcher

#: At most this many remembered matches (the app has a few dozen static rules).
CACHE_SIZE = 512


class StaticRouteMatcher(StateMachineMatcher):
    """werkzeug's matcher, remembering matches that carry no values."""

    def __init__(self, merge_slashes: bool) -> None:
        super().__init__(merge_slashes)
        self._static: dict[tuple[str, str, str, bool], Rule] = {}

    def add(self, rule: Rule) -> None:
        self._static.clear()
        super().add(rule)

    def update(self) -> None:
        self._static.clear()
        super().update()

    def match(
        self, domain: str, path: str, method: str, websocket: bool
    ) -> tuple[Rule, MutableMapping[str, Any]]:
        key = (domain, path, method, websocket)
        rule = self._static.get(key)
        if rule is not None:
            return rule, {}
        rule, values = super().match(domain, path, method, websocket)
        if not values and len(self._static) < CACHE_SIZE:
            self._static[key] = rule
        return rule, values


class RoutedQuart(Quart):
    """Quart whose URL map matches with ``StaticRouteMatcher``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url_map = self.url_map
        matcher = StaticRouteMatcher(url_map.merge_slashes)
        for rule in url_map.iter_rules():  # the static-files rule, added at construction
            matcher.add(rule)
        url_map._matcher = matcher  # werkzeug builds its own and has no hook for another
        url_map._remap = True
