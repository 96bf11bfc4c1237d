"""Who is connected to this node: users and their live sessions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from server.engine.events import Envelope, Event
from server.engine.session import Session


class Hub:
    """The local sessions, by user. Fan-out is a dict lookup and a loop."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, Session]] = {}
        self._count = 0

    def add(self, session: Session) -> None:
        sessions = self._by_user.setdefault(session.user_id, {})
        if session.connection_id not in sessions:
            sessions[session.connection_id] = session
            self._count += 1

    def remove(self, session: Session) -> None:
        sessions = self._by_user.get(session.user_id)
        if sessions is not None and sessions.pop(session.connection_id, None) is not None:
            self._count -= 1
            if not sessions:
                del self._by_user[session.user_id]

    def sessions_of(self, user_id: str) -> list[Session]:
        return list(self._by_user.get(user_id, {}).values())

    def has(self, user_id: str) -> bool:
        return user_id in self._by_user

    def offer(self, envelope: Envelope) -> bool:
        """Hand a notification to every session of its user. Returns whether it was
        declined: the user has sessions here and every one refuses it (filter, mutes,
        expiry), so none of them will take it."""
        sessions = self._by_user.get(envelope.notification.user_id)
        if not sessions:
            return False
        return self.offer_to(sessions, envelope)

    @property
    def by_user(self) -> Mapping[str, Mapping[str, Session]]:
        """The sessions of each user here, by connection id (not to be changed)."""
        return self._by_user

    def offer_to(self, sessions: Mapping[str, Session], envelope: Envelope) -> bool:
        """``offer``, given the sessions of the notification's user (``by_user``'s entry,
        not empty)."""
        # ``admitted``: whether a session still here (not closed by it as slow) admits it.
        if len(sessions) == 1:  # the common case, without copying (an offer may close one)
            (session,) = sessions.values()
            admitted = session.offer(envelope) and not session.closed
        else:
            admitted = False
            for session in list(sessions.values()):
                admitted = (session.offer(envelope) and not session.closed) or admitted
        return not admitted and envelope.notification.user_id in self._by_user

    def push(self, user_id: str, event: Event) -> int:
        """Queue an event on every session of a user; how many sessions there were."""
        sessions = self.sessions_of(user_id)
        for session in sessions:
            session.push(event)
        return len(sessions)

    def __iter__(self) -> Iterator[Session]:
        for sessions in list(self._by_user.values()):
            yield from list(sessions.values())

    def users(self) -> list[str]:
        return list(self._by_user)

    @property
    def connection_count(self) -> int:
        return self._count

    @property
    def user_count(self) -> int:
        return len(self._by_user)
