"""The quickstart without Jupyter: `python -m lmscope.quickstart --html out.html` writes the
dashboard of the default model on a short prompt to one self-contained HTML file."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

PROMPT = "Q: What is the capital of France?\nA: Paris\nQ: What is the capital of Poland?\nA:"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmscope.quickstart", description=__doc__)
    parser.add_argument("--html", type=pathlib.Path, required=True, help="file to write")
    parser.add_argument("--model", default=None, help="model name or path (default: bundled)")
    parser.add_argument("--prompt", default=PROMPT, help="text to inspect")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = parser.parse_args(argv)

    import lmscope

    start = time.perf_counter()
    inspector = lmscope.Inspector.from_pretrained(args.model, device=args.device)
    dash = inspector.show(args.prompt)
    path = dash.save_html(args.html)
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB) in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
