"""Long garbage collections are measured, not shouted about."""

from __future__ import annotations

import gc
import logging

import pytest
from prometheus_client import REGISTRY

from tidingsd.runtime import watch_gc_pauses


def collections(generation: int) -> float:
    labels = {"generation": str(generation)}
    return REGISTRY.get_sample_value("tidings_gc_pause_seconds_count", labels) or 0.0


def test_a_long_collection_is_a_metric_and_a_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tidings")
    callbacks = list(gc.callbacks)
    try:
        watch_gc_pauses(threshold=0.0)  # every collection counts as long
        before = collections(2)
        gc.collect()
        after = collections(2)
    finally:
        gc.callbacks[:] = callbacks

    assert after >= before + 1
    lines = [r for r in caplog.records if r.getMessage().startswith("gc: generation 2")]
    assert lines, caplog.text
    assert {r.levelno for r in lines} == {logging.DEBUG}
