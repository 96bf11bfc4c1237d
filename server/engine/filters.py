"""A session's type filter and the two rules that change it (docs/PROTOCOL.md §5.4).

A filter is either *only these types* or *all but these*:

* ``subscribe(T)``: from "all but E" → only T; from "only S" → only S ∪ T.
* ``unsubscribe(T)``: from "only S" → only S \\ T (an empty set admits nothing until
  the next subscribe); from "all but E" → all but E ∪ T.

Filters are immutable values: each rule returns a new filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TypeFilter:
    """``only`` is the admitted set (None means every type but ``excluded``)."""

    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()

    @classmethod
    def everything(cls) -> TypeFilter:
        return cls()

    def admits(self, notification_type: str) -> bool:
        if self.only is not None:
            return notification_type in self.only
        return notification_type not in self.excluded

    def subscribe(self, types: Iterable[str]) -> TypeFilter:
        admitted = frozenset(types)
        if self.only is None:
            return TypeFilter(only=admitted)
        return TypeFilter(only=self.only | admitted)

    def unsubscribe(self, types: Iterable[str]) -> TypeFilter:
        refused = frozenset(types)
        if self.only is None:
            return TypeFilter(excluded=self.excluded | refused)
        return TypeFilter(only=self.only - refused)

    @property
    def is_everything(self) -> bool:
        return self.only is None and not self.excluded
