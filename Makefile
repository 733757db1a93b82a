# FACT Interview Companion — `make run` to try it, `make test` to check it.
VENV   := .venv
PY     := $(VENV)/bin/python
FLASK  := $(VENV)/bin/flask --app app
PORT   ?= 5000
STAMP  := $(VENV)/.installed

.PHONY: run setup test lint format translations extract update-translations db demo clean soak crash bench

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP) translations

translations: $(STAMP)
	$(VENV)/bin/pybabel compile -d translations --statistics

extract: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output --project=fact-interview-companion --copyright-holder=INNOFACT -o translations/messages.pot .

update-translations: extract
	$(VENV)/bin/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --ignore-obsolete

db: setup
	$(FLASK) db upgrade
	$(FLASK) guides load

demo: db
	$(FLASK) seed-demo

run: demo
	@echo ""
	@echo "The FACT Interview Companion is at http://127.0.0.1:$(PORT)  (Ctrl+C stops it)"
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

test: setup
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) instance .pytest_cache

# 20 tablets x 500 changes with lost requests and answers, duplicates, reordering and expired
# sessions against gunicorn, on SQLite and on PostgreSQL; prints the figures (SOAK_ARGS=--help)
soak: setup
	PY=$(PY) bash tests/soak/both_stores.sh soak $(SOAK_ARGS)

# the server killed with SIGKILL mid-batch 20 times; the store checked after (SOAK_ARGS=--help)
crash: setup
	PY=$(PY) bash tests/soak/both_stores.sh crash $(SOAK_ARGS)

# speed and size: pages, sync, scale, documents, weight and memory against budgets, with the
# app under gunicorn on SQLite and on PostgreSQL (bench/README.md; BENCH_ARGS=--help)
bench: setup
	PY=$(PY) bash tests/soak/both_stores.sh bench.run $(BENCH_ARGS)
