"""``tidings send`` / ``listen`` / ``stats`` / ``status`` as subprocesses against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.harness import ServerProcess


def _tidings() -> list[str]:
    """The console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("tidings")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tidingsd.cli"]


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *_tidings(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_send_then_listen_shows_it(server: ServerProcess) -> None:
    async with asyncio.timeout(30):
        code, out, err = await _run(
            "send", "--server", server.grpc_addr,
            "--user", "42", "--type", "welcome", "--title", "Hello from Tidings",
        )  # fmt: skip
        assert code == 0, err
        assert out.startswith("created notification ")

        code, out, err = await _run(
            "listen", "--user", "42", "--count", "1", env={"TIDINGS_SERVER": server.grpc_addr}
        )
        assert code == 0, err
        assert "welcome [normal] Hello from Tidings" in out
        assert "connected to" in err


async def test_listen_prints_live_notifications_as_json_lines(server: ServerProcess) -> None:
    listen = await asyncio.create_subprocess_exec(
        *_tidings(),
        "listen", "--server", server.grpc_addr, "--user", "43",
        "--json", "--count", "2", "--types", "news",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert listen.stdout is not None and listen.stderr is not None
    try:
        async with asyncio.timeout(30):
            assert "connected to" in (await listen.stderr.readline()).decode()
            for title, kind in (("skipped", "other"), ("first", "news"), ("second", "news")):
                code, _, err = await _run(
                    "send", "--server", server.grpc_addr, "--user", "43",
                    "--type", kind, "--title", title, "--data", '{"n": 1}',
                )  # fmt: skip
                assert code == 0, err
            lines = [json.loads(await listen.stdout.readline()) for _ in range(2)]
            assert await listen.wait() == 0
    finally:
        if listen.returncode is None:
            listen.kill()
            await listen.wait()
    assert [(n["title"], n["type"], n["data"]) for n in lines] == [
        ("first", "news", {"n": 1}),
        ("second", "news", {"n": 1}),
    ]
    assert lines[0]["user_id"] == "43" and lines[0]["created_at"].endswith("Z")


async def test_stats_status_and_errors(server: ServerProcess) -> None:
    async with asyncio.timeout(30):
        code, out, err = await _run("stats", "--server", server.grpc_addr, "--json")
        assert code == 0, err
        assert {"total_connections", "queued", "nodes"} <= json.loads(out).keys()

        code, out, err = await _run("status", "--server", server.grpc_addr, "--user", "5")
        assert (code, out.strip()) == (0, "user 5: not connected"), err

        code, _, err = await _run(
            "send", "--server", server.grpc_addr, "--type", "t", "--title", "x"
        )
        assert code == 2 and "--user" in err

        code, _, err = await _run(
            "send", "--server", server.grpc_addr, "--user", "1", "--type", "t", "--title", ""
        )
        assert code == 1 and "INVALID_ARGUMENT" in err


async def test_the_sdk_alone_has_the_same_commands(server: ServerProcess) -> None:
    """``tidings-client`` (the SDK's own script) needs nothing of the server package."""
    script = Path(sys.executable).with_name("tidings-client")
    assert script.exists(), "the SDK installs a tidings-client console script"
    proc = await asyncio.create_subprocess_exec(
        str(script), "status", "--server", server.grpc_addr, "--user", "6",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert (proc.returncode, out.decode().strip()) == (0, "user 6: not connected"), err.decode()


async def test_inbox_commands_act_on_the_callers_inbox(server: ServerProcess) -> None:
    env = {"TIDINGS_SERVER": server.grpc_addr}

    async def inbox(*args: str) -> list[dict[str, object]]:
        code, out, err = await _run("inbox", *args, "--user", "7", "--json", env=env)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    async with asyncio.timeout(60):
        ids = []
        for kind, title in (("comment", "a"), ("digest", "b"), ("comment", "c")):
            code, out, err = await _run(
                "send", "--user", "7", "--type", kind, "--title", title, "--json",
                "--expires-at", "2999-01-01T00:00:00Z", env=env,
            )  # fmt: skip
            assert code == 0, err
            made = json.loads(out)
            assert made["expires_at"] == "2999-01-01T00:00:00.000Z"
            assert made["ignore_mutes"] is False
            ids.append(made["id"])
        a, b, c = ids

        assert await inbox("counts") == [
            {"unread": 3, "unseen": 3, "by_type": {
                "comment": {"unread": 2, "unseen": 2}, "digest": {"unread": 1, "unseen": 1}}}
        ]  # fmt: skip
        assert await inbox("seen", "--up-to", str(b)) == [{"up_to_id": b, "seen": 2}]
        assert await inbox("read-all", "--type", "comment") == [{"up_to_id": c, "read": 2}]
        assert [n["id"] for n in await inbox("list", "--unread")] == [b]
        assert [n["id"] for n in await inbox("list", "--unseen")] == [c]
        assert [n["id"] for n in await inbox("list", "--type", "comment")] == [c, a]

        [archived] = await inbox("archive", str(a))
        assert archived["archived"] is True
        assert [n["id"] for n in await inbox("list", "--archived")] == [a]
        assert [n["id"] for n in await inbox("list")] == [c, b]
        await inbox("unarchive", str(a))
        assert await inbox("delete", str(b)) == [{"deleted": b}]
        assert [n["id"] for n in await inbox("list")] == [c, a]

        assert await inbox("prefs", "--mute", "digest", "--mute", "build") == [
            {"muted_types": ["build", "digest"]}
        ]
        assert await inbox("prefs", "--unmute", "build") == [{"muted_types": ["digest"]}]
        assert await inbox("prefs") == [{"muted_types": ["digest"]}]

        code, out, err = await _run("inbox", "delete", str(b), "--user", "7", env=env)
        assert code == 1 and "NOT_FOUND" in err
        code, out, err = await _run(
            "send", "--user", "7", "--type", "t", "--title", "x",
            "--expires-at", "2999-01-01T00:00:00", env=env,
        )  # fmt: skip
        assert code == 2 and "give a zone" in err
        code, out, err = await _run("inbox", "counts", "--user", "7", env=env)
        assert (code, out.strip()) == (0, "unread 0, unseen 1 (comment: 0 unread, 1 unseen)")
