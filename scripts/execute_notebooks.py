"""Execute every notebook in notebooks/ in place, saving widget state so the views render on
GitHub/nbviewer without a kernel. Usage: python scripts/execute_notebooks.py [names...]"""

from __future__ import annotations

import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def execute(path: pathlib.Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # progress bars of the weight loader are noise in a rendered notebook
        cell.outputs = [
            out
            for out in cell.outputs
            if not (out.output_type == "stream" and out.get("name") == "stderr")
        ]
        errors = [out for out in cell.outputs if out.output_type == "error"]
        if errors:
            raise RuntimeError(f"{path.name}: {errors[0].ename}: {errors[0].evalue}")
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(names: list[str]) -> int:
    paths = [ROOT / n for n in names] if names else sorted(ROOT.glob("*.ipynb"))
    for path in paths:
        seconds = execute(path)
        print(f"{path.name}: {seconds:.0f} s, {path.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
