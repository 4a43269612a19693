"""Fixtures for browser tests: Debian's chromium through Playwright, and one Jupyter server per
session serving a temporary folder that tests write notebooks into (see harness.py)."""

from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(config, items):
    if shutil.which(CHROMIUM) or pathlib.Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} missing: apt-get install chromium")
    for item in items:
        if "browser" in item.keywords or "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


@dataclass
class JupyterServer:
    url: str
    token: str
    root: pathlib.Path


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory):
    """JupyterLab's server (it also serves Notebook 7 under /notebooks) on a free local port."""
    root = tmp_path_factory.mktemp("notebooks")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "lmscope-test"
    venv_bin = pathlib.Path(sys.executable).parent
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            str(venv_bin / "jupyter"),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("jupyter server did not start")
    if proc.poll() is not None:
        pytest.fail(f"jupyter server exited: {(root / 'server.log').read_text()[-2000:]}")
    yield JupyterServer(url, token, root)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
