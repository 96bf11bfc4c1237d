"""``/openapi.json`` and the server agree: schemathesis fuzzes a real server process.

A bounded, seeded run (the same requests every time) of the schemathesis command line
against a ``tidings serve`` node, in insecure mode and in secure mode with an admin
token. Every answer must be documented (status, media type, body schema), no request
may cause a 5xx, requests the schema forbids must be refused and those it allows must
not be refused as invalid.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.bridge.client import token
from tests.harness import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
    ]
)
SEED = "20261129"
#: Examples per operation and phase: enough to reach every status an operation has,
#: small enough for about 20 s a run on a loaded two-core machine.
MAX_EXAMPLES = "25"
RUN_TIMEOUT = 50.0
#: The rule a schema cannot state (a future ``expires_at``), applied to generated requests.
HOOKS = "tests.bridge.openapi_hooks"
ROOT = Path(__file__).resolve().parents[2]


def python_path() -> str:
    """This checkout first, so that schemathesis finds ``HOOKS``."""
    return os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))


async def fuzz(server: ServerProcess, workdir: Path, *options: str) -> None:
    """Run schemathesis against ``server``; fail with its report unless it found nothing."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.http_url}/openapi.json",
        "--checks", CHECKS,
        "--seed", SEED,
        "--max-examples", MAX_EXAMPLES,
        "--phases", "examples,coverage,fuzzing",
        "--generation-database", "none",
        "--suppress-health-check", "all",  # "too slow" depends on the machine's load
        "--workers", "1",
        "--request-timeout", "10",
        "--no-color",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": python_path()},
    )  # fmt: skip
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    report = output.decode(errors="replace")
    # Exit code 0: no check failed (a warning such as "operation only answered 404" is not
    # a failure: random notification ids are unknown ones).
    assert proc.returncode == 0, report + "\n--- server log ---\n" + server.output[-4000:]


@pytest.mark.timeout(60)
async def test_insecure_mode_matches_the_schema(
    insecure_server: ServerProcess, tmp_path: Path
) -> None:
    await fuzz(insecure_server, tmp_path)


@pytest.mark.timeout(60)
async def test_secure_mode_with_an_admin_token_matches_the_schema(
    secure_server: ServerProcess, tmp_path: Path
) -> None:
    admin = token("fuzz-admin", roles=["admin"], expires_in=3600)
    await fuzz(secure_server, tmp_path, "--header", f"Authorization: Bearer {admin}")
