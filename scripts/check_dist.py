"""Check that a release's files carry the built front end: every view bundle, the static-export
runtime, the shared stylesheet and the vendored widget manager, in the wheel and in the sdist.
Usage: python scripts/check_dist.py dist  (exits 1 and names what is missing)."""

from __future__ import annotations

import pathlib
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def expected() -> set[str]:
    views = {f"{p.stem}.js" for p in (ROOT / "js" / "views").glob("*.js")}
    return views | {
        "static_runtime.js",
        "lmscope.css",
        "vendor/require.js",
        "vendor/html-manager-embed-amd.js",
    }


def missing(names: set[str], prefix: str) -> list[str]:
    return sorted(f for f in expected() if prefix + f not in names)


def main(folder: str) -> int:
    dist = pathlib.Path(folder)
    wheels, sdists = sorted(dist.glob("lmscope-*.whl")), sorted(dist.glob("lmscope-*.tar.gz"))
    if not wheels or not sdists:
        print(f"{dist}: need one wheel and one sdist, found {wheels + sdists}", file=sys.stderr)
        return 1
    problems = []
    for wheel in wheels:
        names = set(zipfile.ZipFile(wheel).namelist())
        problems += [f"{wheel.name}: no {f}" for f in missing(names, "lmscope/static/")]
    for sdist in sdists:
        with tarfile.open(sdist) as archive:
            top = archive.getnames()[0].split("/")[0]
            names = set(archive.getnames())
        problems += [f"{sdist.name}: no {f}" for f in missing(names, f"{top}/src/lmscope/static/")]
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(
            f"ok: {', '.join(p.name for p in wheels + sdists)} carry {len(expected())} files each"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist"))
