# The two commands of the README: `make up` and `make test`.
.PHONY: up test lint bench bootstrap

bootstrap:
	@scripts/bootstrap.sh

up: bootstrap
	.venv/bin/signet up

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet

test: lint
	.venv/bin/pytest

bench: bootstrap
	.venv/bin/python -m benchmarks
