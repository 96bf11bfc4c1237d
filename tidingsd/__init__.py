"""The ``tidings`` process: the one place that knows both the engine (``server``) and the
bridge (``bridge``), and composes them as the settings ask (docs/ARCHITECTURE.md)."""
