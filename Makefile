# The two commands of the README: `make main` and `make test`. Each creates .venv and installs everything itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.14.1 + torchvision 0.29.1 are the newest pair that import together on these machines (see nbs/index.ipynb).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: main test test-fast export readme book clean

$(BIN)/.installed: settings.ini setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH) -e '.[dev,ray]'
	touch $@

# A small real experiment (Repeated MNIST, BatchBALD vs BALD vs random, b=10), resumable, then its learning curves.
main: $(BIN)/.installed
	$(BIN)/batchbald-nb run readme --out runs/readme --processes 3 --download
	$(BIN)/batchbald-nb plot runs/readme --out runs/readme/curves.png

# Notebooks == modules, README == index notebook, every notebook's tests, then tests/.
test: $(BIN)/.installed
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- batchbald_nb)" ]; then \
		echo "FAIL: batchbald_nb/ differs from what the notebooks export (run nbdev_export and commit both):"; \
		git status --porcelain -- batchbald_nb; git --no-pager diff --stat -- batchbald_nb; exit 1; fi
	$(BIN)/python tools/make_readme.py --check
	$(BIN)/nbdev_test --n_workers 2
	$(BIN)/python -m pytest -q -rs tests --ignore=tests/test_book_browser.py --ignore=tests/test_lab.py

export: $(BIN)/.installed
	$(BIN)/nbdev_export
	$(BIN)/python tools/make_readme.py

clean:
	rm -rf $(VENV) _docs _proc _book build dist *.egg-info

# The online book (tools/build_book.py): every notebook executed (cached in _book_cache/) and rendered by jupyter-book, offline,
# with MathJax and the widget manager installed from npm (book/). Open _book/_build/html/index.html.
# test-book builds it, serves it on 127.0.0.1 and checks every page in headless Chromium (apt-get install -y chromium).
.PHONY: test-book
$(BIN)/.installed-book: $(BIN)/.installed settings.ini setup.py
	$(BIN)/pip install --quiet -e '.[book]'
	touch $@

book: $(BIN)/.installed-book
	$(BIN)/python tools/build_book.py

test-book: $(BIN)/.installed-book $(BIN)/.installed-lab
	$(BIN)/python -m pytest -q -rs tests/test_book_browser.py tests/test_lab.py

# JupyterLab on the notebooks (nbs/), in this project's environment, offline: the widgets' manager comes with jupyterlab
# (jupyterlab_widgets), no news, update checks or extension-manager queries to the internet; as root (containers) with --allow-root.
# Extra options: make lab LAB_ARGS='--port 8899'; another folder: make lab LAB_ROOT=somewhere.
# tests/test_lab.py runs this command (it reads it with `make -n lab`), opens 03b_interactive.ipynb in headless Chromium and moves a slider.
.PHONY: lab
$(BIN)/.installed-lab: $(BIN)/.installed settings.ini setup.py
	$(BIN)/pip install --quiet -e '.[lab]'
	touch $@

LAB_ROOT ?= nbs
lab: $(BIN)/.installed-lab
	$(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_ROOT) --ServerApp.ip=127.0.0.1 --LabApp.news_url=None \
		--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate --LabApp.extension_manager=readonly \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)
