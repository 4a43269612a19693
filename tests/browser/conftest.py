"""Fixtures for browser tests (see harness.py for the helpers that use them):

- `browser`: Debian's chromium through Playwright, one per session; `page`: a fresh page that
  fails the test on any uncaught page error.
- `jupyter_server`: one JupyterLab 4 server per session (random port, auth disabled, temp root
  and Jupyter dirs, the venv's python3 kernel); `jupyter_lab` / `notebook7`: that server's two
  front ends, each with `.run(browser, cells)` returning a page where the notebook has run.

Tests that need chromium are marked `browser`, those that start the server `e2e`.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest

HERE = pathlib.Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(TESTS))

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
    """A running Jupyter server; `token` is "" (auth disabled) but kept so URLs stay uniform."""

    url: str
    token: str
    root: pathlib.Path


@dataclass
class JupyterApp:
    """One front end of the shared server: `app` is "lab" (JupyterLab 4) or "notebooks"
    (Notebook 7). `page = jupyter_lab.run(browser, cells)` runs a notebook there."""

    server: JupyterServer
    app: str

    def run(self, browser, cells: list[str], name: str | None = None, **kwargs):
        from harness import run_notebook

        return run_notebook(browser, self.server, cells, self.app, name=name, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(base: pathlib.Path) -> dict[str, str]:
    """Jupyter dirs in a temp folder: no user kernelspec, setting or workspace leaks in, and the
    default python3 kernel is this venv's (ipykernel's spec says "python", which the server
    replaces by its own sys.executable)."""
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": base / "settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "workspaces",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    # no "get notified of Jupyter news?" toast over the notebook
    notification = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.update({k: str(v) for k, v in dirs.items()})
    env["JUPYTER_PREFER_ENV_PATH"] = "1"
    env["IPYTHONDIR"] = str(base / "ipython")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory):
    """One JupyterLab 4 server for the session, on a free local port with auth disabled, serving
    a temp root that tests write notebooks into. It also serves Notebook 7 (/notebooks/...), so
    both front ends share one server and one startup. Killed at teardown."""
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    root.mkdir()
    port = _free_port()
    venv_bin = pathlib.Path(sys.executable).parent
    log = open(base / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            str(venv_bin / "jupyter"),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # window.jupyterapp lets the helpers run cells once the kernel is really idle
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            # Notebook 7 has no news toast and trips over Lab's notification settings
            f"--JupyterNotebookApp.user_settings_dir={base / 'settings-notebook'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_isolated_env(base),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"jupyter server did not start:\n{(base / 'server.log').read_text()[-3000:]}"
                    )
                time.sleep(0.3)
        yield JupyterServer(url, "", root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def jupyter_lab(jupyter_server) -> JupyterApp:
    return JupyterApp(jupyter_server, "lab")


@pytest.fixture(scope="session")
def notebook7(jupyter_server) -> JupyterApp:
    return JupyterApp(jupyter_server, "notebooks")
