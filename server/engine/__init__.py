"""The notification engine: sessions, queues, fan-out. Knows nothing of any transport."""

from server.engine.engine import Engine, EngineConfig
from server.engine.session import Session, SessionLimits

__all__ = ["Engine", "EngineConfig", "Session", "SessionLimits"]
