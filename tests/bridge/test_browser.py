"""The inbox page in a real headless Chromium (Debian's; ``make browser`` installs it).

Set ``TIDINGS_SCREENSHOT=docs/screenshot-inbox.png`` to save a screenshot of the page.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from tidings.v1 import admin_pb2, admin_pb2_grpc, notification_pb2

from tests.bridge.client import create
from tests.harness import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: run `make browser` (apt-get install chromium)",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        yield chromium
        await chromium.close()


async def create_offline(db_url: str, user: str, titles: list[str]) -> list[int]:
    """Create notifications while no bridge runs: through an engine-only node on the same file."""
    engine = await ServerProcess("--insecure", role="grpc", database_url=db_url).start()
    try:
        async with grpc.aio.insecure_channel(engine.grpc_addr) as channel:
            admin = admin_pb2_grpc.NotificationAdminServiceStub(channel)
            ids = []
            for title in titles:
                answer = await admin.CreateNotification(
                    admin_pb2.CreateNotificationRequest(
                        user_id=user, type="deploy", title=title,
                        priority=notification_pb2.PRIORITY_HIGH,
                    ),
                    metadata=(("x-tidings-user", "ops"),),
                    timeout=5,
                )  # fmt: skip
                ids.append(answer.notification.id)
        assert await engine.stop() == 0
        return ids
    finally:
        await engine.kill()


async def shown_ids(page: Page) -> list[int]:
    ids = await page.locator("[data-testid=list] > li").evaluate_all(
        "items => items.map(item => Number(item.dataset.id))"
    )
    assert isinstance(ids, list)
    return [int(i) for i in ids]


async def test_inbox_live_mark_read_and_reconnect_after_restart(
    browser: Browser, tmp_path: Path, uid: str
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
    server = await ServerProcess("--insecure", database_url=db_url).start()
    restarted: ServerProcess | None = None
    page = await browser.new_page(viewport={"width": 960, "height": 720})
    try:
        history = [
            await create(server, uid, "welcome", "Welcome to Tidings", message="Glad you came."),
            await create(
                server, uid, "comment", "Ana replied to your comment",
                message="“Looks good to me — ship it.”",
            ),
        ]  # fmt: skip
        await page.goto(f"{server.http_url}/?user_id={uid}")
        state = page.get_by_test_id("state")
        unread = page.get_by_test_id("unread")
        await expect(state).to_have_attribute("data-state", "open")
        await expect(unread).to_have_text("2")
        assert await shown_ids(page) == [history[1]["id"], history[0]["id"]]

        # live: a notification created through REST appears within a second
        live = await create(
            server, uid, "build", "Build #482 passed", message="main · 3m 12s", priority="low"
        )
        await expect(page.locator(f'li[data-id="{live["id"]}"]')).to_be_visible(timeout=1000)
        await expect(unread).to_have_text("3")

        # mark as read lowers the unread count
        await page.locator(f'li[data-id="{history[0]["id"]}"] .mark-read').click()
        await expect(unread).to_have_text("2")
        await expect(page.locator(f'li[data-id="{history[0]["id"]}"]')).not_to_have_class(
            "item unread"
        )

        # restart on the same HTTP port and SQLite file; two arrive while it is down
        await page.evaluate("window.tidings.options.maxDelay = 1000")
        assert await server.stop() == 0
        await expect(state).not_to_have_attribute("data-state", "open")
        missed = await create_offline(db_url, uid, ["Deploy started", "Deploy finished"])
        restarted = await ServerProcess(
            "--insecure", database_url=db_url, http_addr=server.http_addr
        ).start()
        await expect(state).to_have_attribute("data-state", "open", timeout=15_000)
        for nid in missed:
            await expect(page.locator(f'li[data-id="{nid}"]')).to_be_visible()
        await expect(unread).to_have_text("4")
        ids = await shown_ids(page)
        assert ids == sorted(ids, reverse=True)
        assert len(ids) == len(set(ids)) == 5

        if screenshot := os.environ.get("TIDINGS_SCREENSHOT"):
            await page.screenshot(path=screenshot)
    finally:
        await page.close()
        await server.kill()
        if restarted is not None:
            await restarted.kill()


async def test_type_filter_and_unread_only(browser: Browser, tmp_path: Path, uid: str) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
    async with ServerProcess("--insecure", database_url=db_url) as server:
        a = await create(server, uid, "alpha", "First")
        b = await create(server, uid, "beta", "Second")
        page = await browser.new_page()
        try:
            await page.goto(f"{server.http_url}/?user_id={uid}")
            await expect(page.get_by_test_id("state")).to_have_attribute("data-state", "open")
            await page.get_by_test_id("type-filter").select_option("beta")
            await expect(page.locator(f'li[data-id="{a["id"]}"]')).to_be_hidden()
            await expect(page.locator(f'li[data-id="{b["id"]}"]')).to_be_visible()
            await page.get_by_test_id("type-filter").select_option("")
            await page.locator(f'li[data-id="{b["id"]}"] .mark-read').click()
            await expect(page.get_by_test_id("unread")).to_have_text("1")
            await page.get_by_test_id("unread-only").check()
            await expect(page.locator(f'li[data-id="{b["id"]}"]')).to_be_hidden()
            await expect(page.locator(f'li[data-id="{a["id"]}"]')).to_be_visible()
        finally:
            await page.close()


async def test_bell_seen_archive_mark_all_read_mutes_and_delete(
    browser: Browser, tmp_path: Path, uid: str
) -> None:
    """The inbox features on the page, with a second tab of the same user that follows
    every change through its own WebSocket session."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
    async with ServerProcess("--insecure", database_url=db_url) as server:
        a = await create(server, uid, "alpha", "First")
        b = await create(server, uid, "beta", "Second")
        c = await create(server, uid, "alpha", "Third")
        page = await browser.new_page()
        other = await browser.new_page()
        try:
            for tab in (page, other):
                await tab.goto(f"{server.http_url}/?user_id={uid}")
                await expect(tab.get_by_test_id("state")).to_have_attribute("data-state", "open")
                await expect(tab.get_by_test_id("unread")).to_have_text("3")
                await expect(tab.get_by_test_id("unseen")).to_have_text("3")
            item = page.locator(f'li[data-id="{a["id"]}"]')
            await expect(item).to_have_class(re.compile(r"\bunseen\b"))

            # opening the bell marks everything shown seen, on both tabs
            await page.get_by_test_id("bell").click()
            for tab in (page, other):
                await expect(tab.get_by_test_id("unseen")).to_have_text("0")
                await expect(tab.get_by_test_id("unseen")).to_be_hidden()
                await expect(tab.locator("li.unseen")).to_have_count(0)
            await expect(page.get_by_test_id("unread")).to_have_text("3")  # seen is not read
            d = await create(server, uid, "beta", "Fourth")
            await expect(page.locator(f'li[data-id="{d["id"]}"]')).to_have_class(
                re.compile(r"\bunseen\b")
            )
            await expect(page.get_by_test_id("unseen")).to_have_text("1")

            # archive: out of the inbox view and the counts, into the archived view
            await page.locator(f'li[data-id="{b["id"]}"] .archive').click()
            for tab in (page, other):
                await expect(tab.locator(f'li[data-id="{b["id"]}"]')).to_be_hidden()
                await expect(tab.get_by_test_id("unread")).to_have_text("3")
            await page.get_by_test_id("view-archived").click()
            await expect(page.locator(f'li[data-id="{b["id"]}"]')).to_be_visible()
            await expect(page.locator(f'li[data-id="{a["id"]}"]')).to_be_hidden()
            await page.locator(f'li[data-id="{b["id"]}"] .unarchive').click()
            await expect(page.locator(f'li[data-id="{b["id"]}"]')).to_be_hidden()
            await page.get_by_test_id("view-inbox").click()
            await expect(page.locator(f'li[data-id="{b["id"]}"]')).to_be_visible()
            await expect(page.get_by_test_id("unread")).to_have_text("4")

            # mark all read: one click, every item on both tabs
            await page.get_by_test_id("mark-all-read").click()
            for tab in (page, other):
                await expect(tab.get_by_test_id("unread")).to_have_text("0")
                await expect(tab.locator("li.unread")).to_have_count(0)

            # the type menu: per-type counts and a mute that sticks and reaches the other tab
            await page.get_by_test_id("type-menu").locator("summary").click()
            await page.get_by_test_id("mute-alpha").check()
            await expect(other.get_by_test_id("mute-alpha")).to_be_checked()
            quiet = await create(server, uid, "alpha", "Muted one")
            loud = await create(server, uid, "beta", "Not muted")
            await expect(page.locator(f'li[data-id="{loud["id"]}"]')).to_be_visible()
            await expect(page.get_by_test_id("unread")).to_have_text("1")  # alpha left out
            await expect(page.locator('[data-type="alpha"] .figures')).to_have_text(
                "1 unread · 1 new"
            )
            await expect(page.locator(f'li[data-id="{quiet["id"]}"]')).to_have_count(0)
            await page.reload()
            await expect(page.get_by_test_id("state")).to_have_attribute("data-state", "open")
            await page.get_by_test_id("type-menu").locator("summary").click()
            await expect(page.get_by_test_id("mute-alpha")).to_be_checked()
            # a muted type is still in the inbox
            await expect(page.locator(f'li[data-id="{quiet["id"]}"]')).to_be_visible()

            # delete: gone from both tabs, and from a fresh load
            await page.locator(f'li[data-id="{c["id"]}"] .delete').click()
            for tab in (page, other):
                await expect(tab.locator(f'li[data-id="{c["id"]}"]')).to_have_count(0)
            await page.reload()
            await expect(page.get_by_test_id("state")).to_have_attribute("data-state", "open")
            await expect(page.locator(f'li[data-id="{a["id"]}"]')).to_be_visible()
            await expect(page.locator(f'li[data-id="{c["id"]}"]')).to_have_count(0)
        finally:
            await page.close()
            await other.close()
