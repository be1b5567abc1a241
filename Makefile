# The two commands of the README:
#   make demo   set up (first time only) and run the main job on the built-in synthetic sample
#   make test   set up (first time only) and run the test suite under a virtual screen
.PHONY: setup demo test benchmarks clean

VENV := .venv
XVFB := xvfb-run -a -s "-screen 0 1600x1000x24"

setup:
	bash scripts/setup.sh

demo: setup
	$(XVFB) $(VENV)/bin/mmdl demo --out mmdl-demo

test: setup
	$(XVFB) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

benchmarks: setup
	for f in benchmarks/*.py; do $(VENV)/bin/python $$f || exit 1; done

clean:
	rm -rf mmdl-demo build dist .pytest_cache
