# The two commands a fresh machine needs: `make quickstart` and `make test`.
.PHONY: setup quickstart quickstart-html test lint js wheel sdist release-check

setup:
	bash scripts/setup.sh

# Main job: JupyterLab on the quickstart notebook with the bundled default model.
quickstart: setup
	.venv/bin/jupyter lab notebooks/quickstart.ipynb

# Headless variant: the dashboard for the default model written to one self-contained HTML file.
quickstart-html: setup
	.venv/bin/python -m lmscope.quickstart --html quickstart.html

# The whole suite: lint, bundle freshness, JS unit tests, Python + browser + notebook tests.
test: setup
	bash scripts/test.sh

# What the project provides to install from until a release is on PyPI (README: Install):
# dist/lmscope-<version>-py3-none-any.whl, built from the committed bundle (no node needed).
wheel: setup
	.venv/bin/python -m build --wheel --no-isolation --outdir dist .

# The source archive, bundle included: dist/lmscope-<version>.tar.gz.
sdist: setup
	.venv/bin/python -m build --sdist --no-isolation --outdir dist .

# Everything a release needs checked before it is cut (docs/releasing.md).
release-check: setup
	rm -rf dist
	.venv/bin/python -m build --no-isolation --outdir dist .
	.venv/bin/twine check --strict dist/*
	.venv/bin/python scripts/check_dist.py dist
