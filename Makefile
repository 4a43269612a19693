# The two commands a fresh machine needs: `make quickstart` and `make test`.
.PHONY: setup quickstart quickstart-html test lint js

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
