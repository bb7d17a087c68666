# Two commands on a fresh machine: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# torchattacks is a test-time reference; its declared torchvision pin would pull a CUDA torch.
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1
	touch $(STAMP)

# The demo study: the mlp on mnist1d; none vs L2 vs L1 vs dropout, each over a small grid; 10 seeds
# (with fewer than 6 seeds the signed-rank test cannot reach p<0.05). model.dropout=0 makes every
# comparison differ only in the regularizer: none has no dropout, L1/L2 add only their penalty, and
# dropout only its rate.
DEMO_GRID := --grid 'reg=none,l2,l1,dropout' --grid 'reg.lam=1e-5:1e-3:log:3' --grid 'reg.dropout=0.1,0.3,0.5'
DEMO_SET := model.dropout=0 model.hidden=[256,128] train.epochs=30

demo: $(STAMP)
	$(VENV)/bin/reglab sweep mlp-l2 $(DEMO_SET) $(DEMO_GRID) --seeds 0-9 --name demo
	$(VENV)/bin/reglab report studies/demo --out report/

test: $(STAMP)
	# two test processes, one thread each: more threads than cores makes torch spin
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile -m 'not alone'
	# the tests that measure the machine's load, with nothing else running beside them
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m alone

bench: $(STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) runs studies report
