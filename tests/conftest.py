"""What every test module shares."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(autouse=True)
def _no_foreign_event_loop(request):
    """A plain test runs as a script: no running event loop. Playwright's sync API (the browser
    tests' session-wide browser) runs its loop in another greenlet of this thread and leaves it
    set as the thread's running loop between calls, so without this a test that runs after a
    browser test would see a kernel's loop and the views would queue their work on it."""
    loop = asyncio._get_running_loop()
    uses_browser = {"browser", "page"} & set(request.fixturenames)
    if loop is None or uses_browser or request.node.get_closest_marker("browser"):
        yield
        return
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)
