"""A session's type filter and the two rules that change it (docs/PROTOCOL.md §5.4).

A filter is either *only these types* or *all but these*:

* ``subscribe(T)``: from "all but E" → only T; from "only S" → only S ∪ T.
* ``unsubscribe(T)``: from "only S" → only S \\ T (an empty set admits nothing until
  the next subscribe); from "all but E" → all but E ∪ T.

Filters are immutable values: each rule returns a new filter.

A filter is bounded, so that a session's state and every ``subscription_updated``
answer (which repeats the whole filter) stay small: at most ``MAX_TYPES`` types and
``MAX_TYPE_BYTES`` bytes of type names (UTF-8) in its list. A change that would go
beyond raises ``InvalidArgument`` (``invalid_message``) and the filter stays as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from server.engine.errors import InvalidArgument

#: The most types a filter's list (admitted or excluded) may hold.
MAX_TYPES: Final = 100
#: The most bytes (UTF-8) the type names of a filter's list may add up to.
MAX_TYPE_BYTES: Final = 8192


@dataclass(frozen=True, slots=True)
class TypeFilter:
    """``only`` is the admitted set (None means every type but ``excluded``)."""

    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()

    @classmethod
    def everything(cls) -> TypeFilter:
        """Every type (one shared value: filters are immutable, a change makes a new one)."""
        return EVERYTHING

    def admits(self, notification_type: str) -> bool:
        if self.only is not None:
            return notification_type in self.only
        return notification_type not in self.excluded

    def subscribe(self, types: Iterable[str]) -> TypeFilter:
        """The filter after ``subscribe(types)``; ``InvalidArgument`` if it would be too big."""
        admitted = frozenset(types)
        if self.only is None:
            return TypeFilter(only=_bounded(admitted))
        return TypeFilter(only=_bounded(self.only | admitted))

    def unsubscribe(self, types: Iterable[str]) -> TypeFilter:
        """The filter after ``unsubscribe(types)``; ``InvalidArgument`` if it would be too big."""
        refused = frozenset(types)
        if self.only is None:
            return TypeFilter(excluded=_bounded(self.excluded | refused))
        return TypeFilter(only=self.only - refused)

    @property
    def is_everything(self) -> bool:
        return self.only is None and not self.excluded


#: The filter of a session that named no types.
EVERYTHING: Final = TypeFilter()


def _bounded(types: frozenset[str]) -> frozenset[str]:
    if (
        len(types) > MAX_TYPES
        or sum(len(t.encode(errors="surrogatepass")) for t in types) > MAX_TYPE_BYTES
    ):
        raise InvalidArgument(
            "notification_types",
            f"a session's filter holds at most {MAX_TYPES} types of at most "
            f"{MAX_TYPE_BYTES} bytes in all; the filter was not changed",
        )
    return types
