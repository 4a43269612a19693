"""A fresh clone installs without node: the built bundle is committed and ships in the wheel and
in the source archive, both of which pass `twine check` (the release procedure, docs/releasing.md)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / ".git").exists() or not shutil.which("git"), reason="needs git")
def test_wheel_from_a_clean_clone_carries_every_bundle_without_node(tmp_path):
    pytest.importorskip("hatchling")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # no node, npm or esbuild on PATH: only what git committed can end up in the wheel
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-w", str(tmp_path / "dist"), str(clone)],
        check=True,
        env=env,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("lmscope-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    views = sorted(p.stem for p in (clone / "js" / "views").glob("*.js"))
    assert views, "no view sources in js/views"
    expected = {f"lmscope/static/{v}.js" for v in views}
    expected |= {"lmscope/static/static_runtime.js", "lmscope/static/lmscope.css"}
    assert expected <= names, sorted(expected - names)


@pytest.mark.skipif(not (ROOT / ".git").exists() or not shutil.which("git"), reason="needs git")
def test_release_files_pass_twine_and_carry_the_bundle(tmp_path):
    pytest.importorskip("build")
    pytest.importorskip("twine")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    dist = tmp_path / "dist"
    # what `make release-check` runs: the sdist, the wheel built from it, twine, the bundle
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(clone)],
        check=True,
        capture_output=True,
    )
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
    )
    assert twine.returncode == 0, twine.stdout + twine.stderr
    check = subprocess.run(
        [sys.executable, str(clone / "scripts" / "check_dist.py"), str(dist)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
