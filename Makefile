# The targets people look for; each is one line calling the command the README documents.
.PHONY: setup test compare docker-test bench docs-test

setup:
	python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[dev]'

test:
	.venv/bin/pytest -n 2

compare:
	.venv/bin/deploy compare --rides 2000

docker-test:
	.venv/bin/pytest -m docker

docs-test:
	DEPLOY_DOCS_SLOW=1 .venv/bin/pytest tests/docs

bench:
	set -e; for script in benchmarks/core/bench_scoring.py benchmarks/web/bench_web.py benchmarks/batch/bench_batch.py benchmarks/stream/bench_stream.py; do .venv/bin/python $$script; done
