"""The benchmark machinery runs end to end: ``bench.run --quick`` against the raw
``websockets`` reference and Tidings' WebSocket path at a tiny N. Asserts that figures
come back, never how fast they are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.bench, pytest.mark.timeout(60)]


def test_quick_run_reports_numbers(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.run", "--quick", "--no-docs",
            "--servers", "ws-raw,tidings-ws", "--n", "10",
            "--scenarios", "connect,fanout,broadcast,targeted,backlog",
            "--out", str(tmp_path),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results,) = tmp_path.glob("bench-*.jsonl")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert "meta" in rows[0]
    by = {(r.get("server"), r.get("phase")): r for r in rows[1:]}
    for server in ("ws-raw", "tidings-ws"):
        assert by[server, "connect"]["connected"] == 10, by[server, "connect"]
        assert by[server, "connect"]["idle_kib_per_session"] is not None
        broadcast = by[server, "broadcast"]
        assert broadcast["deliveries"] == broadcast["expected"] > 0, broadcast
        assert broadcast["deliveries_per_s"] > 0
        assert broadcast["latency_p99_ms"] is not None
        assert by[server, "targeted"]["delivered"] > 0
    assert by["tidings-ws", "backlog"]["failures"] == 0
    assert "deliveries/s" in done.stdout  # the Markdown report was printed


@pytest.mark.parametrize("path", [["--via", "rest"], ["--via", "grpc", "--receivers", "grpc"]])
def test_targeted_latency_reports_every_create_received(path: list[str]) -> None:
    """``bench.targeted_latency`` at a tiny scale: every paced create reaches its user."""
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.targeted_latency", *path,
            "--users", "10", "--procs", "1", "--rate", "50", "--warmup", "0.2", "--seconds", "1",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = [json.loads(line) for line in done.stdout.splitlines() if '"server"' in line]
    assert row["creates"] > 0 and row["missing"] == 0, row
    assert row["p99_ms"] is not None and row["server_cpu_cores"] > 0, row


def test_rest_create_paired_reports_both_trees_and_their_ratios() -> None:
    """``bench/rest_create.py --paired``: this tree and a commit's, served at once, each
    with its creates counted, and the ratios of their round trips per round."""
    pytest.importorskip("aiohttp", reason="the bench extra is not installed (`make bench` does)")
    done = subprocess.run(
        [
            sys.executable, "bench/rest_create.py", "--baseline", "HEAD", "--paired",
            "--clients", "1", "--seconds", "0.5", "--rounds", "1",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    servers = [r for r in rows if "server" in r]
    assert [r["server"] for r in servers] == ["mine", "baseline"], servers
    assert all(r["creates"] > 0 and r["server_us_cpu_per_create"] > 0 for r in servers)
    (ratios,) = [r for r in rows if r.get("round") == 1]
    assert ratios["baseline/tidings p50_ms"] > 0, ratios
