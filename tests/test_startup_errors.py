"""A database that cannot be used at start-up: one line saying what is wrong, exit 1."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness import TEST_SECRET

pytestmark = pytest.mark.timeout(60)


async def run(*args: str) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidingsd.cli", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace").splitlines()


def serve(database_url: str, *extra: str) -> list[str]:
    return [
        "serve", "--jwt-secret", TEST_SECRET, "--database-url", database_url,
        "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", *extra,
    ]  # fmt: skip


def missing_sqlite(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "no" / "such" / "dir" / "tidings.db"
    return f"sqlite+aiosqlite:///{path}", "unable to open"


def missing_postgres(pg_url: str) -> tuple[str, str]:
    name = f"tidings_missing_{uuid.uuid4().hex[:12]}"
    return pg_url.rsplit("/", 1)[0] + f"/{name}", f'database "{name}" does not exist'


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def missing(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A database URL that cannot be opened, and what the error must say."""
    if request.param == "sqlite":
        return missing_sqlite(tmp_path)
    return missing_postgres(request.getfixturevalue("pg_url"))


@pytest.mark.parametrize("migrate", [True, False], ids=["migrate", "no-migrate"])
async def test_serve_on_a_missing_database_says_so_in_one_line(
    missing: tuple[str, str], migrate: bool
) -> None:
    url, problem = missing
    code, lines = await run(*serve(url, *(() if migrate else ("--no-migrate",))))

    assert code == 1, lines
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    problems = [line for line in lines if " ERROR " in line or " WARNING " in line]
    assert len(problems) == 1, "\n".join(lines)
    assert "could not start" in problems[0] and problem in problems[0], problems[0]
    assert len(lines) <= 3, "\n".join(lines)


async def test_db_upgrade_on_a_missing_database_says_so_in_one_line(tmp_path: Path) -> None:
    url, problem = missing_sqlite(tmp_path)
    code, lines = await run("db", "upgrade", "--database-url", url)

    assert code == 1, lines
    assert len(lines) == 1 and problem in lines[0], "\n".join(lines)


async def test_a_password_in_the_url_is_not_shown(pg_url: str) -> None:
    url, _ = missing_postgres(pg_url)
    with_password = url.replace("://postgres@", "://postgres:hunter2@")
    code, lines = await run(*serve(with_password))

    assert code == 1
    assert "hunter2" not in "\n".join(lines)
