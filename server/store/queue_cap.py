"""The per-user queue cap, written once for both SQL stores.

After a create, a user who is offline keeps at most ``cap`` queued rows: the oldest
beyond it leave the queue and count as drops (``users.dropped_since_connect``), which
makes that user's next replay without ``since`` report ``truncated``. Counting is much
cheaper than ranking, and few users are ever over the cap, so the stores first ask
which users are over it (``OVER_CAP``) and rank only theirs (``TRIM``).

Each store fills in its dialect: ``queued`` is the predicate of the partial queue index
as that database matches it, ``users`` a condition on ``user_id``, ``cap`` a parameter.
"""

from __future__ import annotations

QUEUED_ROWS = "SELECT user_id FROM notifications WHERE {queued} AND {users}"
OVER_CAP = "SELECT user_id FROM ({rows}) AS queued_rows GROUP BY user_id HAVING count(*) > {cap}"
TRIM = (
    "UPDATE notifications SET queued = false WHERE id IN ("
    " SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id DESC)"
    " AS rank FROM notifications WHERE {queued} AND {users}) AS ranked WHERE rank > {cap}"
    ") RETURNING user_id"
)
COUNT_DROPS = (
    "UPDATE users SET dropped_since_connect = dropped_since_connect + {dropped} "
    "WHERE user_id = {user}"
)


def statements(*, queued: str, users: str, cap: str, uncommitted: str = "") -> tuple[str, str]:
    """``OVER_CAP`` and ``TRIM`` in one dialect. ``uncommitted`` selects the ``user_id``
    of queued rows the statement cannot see in the table yet (rows a data-modifying
    ``WITH`` of the same statement inserts). It may select more (an item whose insert
    was skipped): ``OVER_CAP`` then names a user in excess, and ``TRIM``, which ranks
    the queue as it is, drops nothing of theirs."""
    rows = QUEUED_ROWS.format(queued=queued, users=users)
    if uncommitted:
        rows += f" UNION ALL {uncommitted}"
    return (
        OVER_CAP.format(rows=rows, cap=cap),
        TRIM.format(queued=queued, users=users, cap=cap),
    )
