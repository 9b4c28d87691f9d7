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

# The future-validation tests move the wall clock (freezegun): in their own process, so
# that nothing built while the clock is moved (pydantic schemas, S3 request dates)
# outlives them in the rest of the suite.
test: lint
	.venv/bin/pytest --ignore=tests/signer/test_tsa_rollover.py
	.venv/bin/pytest tests/signer/test_tsa_rollover.py

bench: bootstrap
	.venv/bin/python -m benchmarks
