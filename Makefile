# The build of the notes.  `make help` lists the targets.

VENV   := .venv
PYTHON := $(VENV)/bin/python
BUILD  := .build
# The Emacs to build and test with: `make test EMACS=/path/to/emacs`.  An
# Org on EMACSLOADPATH is used too.  Old Emacsen set EMACS=t in shells.
EMACS  ?= emacs
ifeq ($(EMACS),t)
EMACS  := emacs
endif
export EMACS
# The Emacs with X that tests show README.org in, on Xvfb; the one above may
# have no X.  Any other build with X will do: `make test GUI_EMACS=emacs-lucid`.
GUI_EMACS ?= emacs-gtk
export GUI_EMACS
BATCH_EMACS := $(EMACS) -Q --batch

# The venv's pinned packages are installed; its stamp is newer than them.
VENV_STAMP   := $(VENV)/.installed
# What the last successful `make tangle` produced, listed by the build
# itself (so no second reading of README.org can disagree with Org's) and
# written last, so it is the build's stamp too: the outputs are only
# rewritten when their bytes change, and their timestamps cannot say this.
OUTPUTS_LIST := $(BUILD)/outputs
OUTPUTS      := $(shell cat $(OUTPUTS_LIST) 2>/dev/null)
MISSING      := $(filter-out $(wildcard $(OUTPUTS)),$(OUTPUTS))

BUILD_TOOLS := tools/build.el tools/ob-gradients.el tools/kernel_bridge.py

# Debian packages, each with the check that tells it is there.
BUILD_PACKAGES := 'emacs-nox=command -v $(firstword $(EMACS))' 'graphviz=command -v dot'
TEST_PACKAGES  := 'ruby-github-markup=command -v github-markup' \
                  'ruby-org=ruby -e "require %q(org-ruby)"' \
                  'chromium=command -v chromium'
# Debian installs either emacs-nox or emacs-gtk, and emacs-gtk gives the
# build its `emacs` too: these go first, or apt-get would be asked for both.
GUI_PACKAGES   := 'emacs-gtk=command -v $(GUI_EMACS)' 'xvfb=command -v Xvfb' \
                  'xdotool=command -v xdotool'
REQUIRE := tools/require-debian-packages

.DEFAULT_GOAL := help
.PHONY: help tangle run test notebook preview bench kernelspec venv clean FORCE

help:  ## list the targets
	@sed -n 's/^\([a-z]*\):.*## \(.*\)/  make \1\t\2/p' $(MAKEFILE_LIST) | expand -t 20

tangle: $(OUTPUTS_LIST)  ## gradients.py and the pictures in images/, from README.org

$(OUTPUTS_LIST): README.org $(BUILD_TOOLS) $(VENV_STAMP) $(wildcard $(OUTPUTS)) $(if $(MISSING),FORCE)
	@$(REQUIRE) $(BUILD_PACKAGES)
	$(BATCH_EMACS) -l tools/build.el -f gradients-build-tangle README.org

run: $(VENV_STAMP)  ## restart and run all: rewrite every result and picture in README.org
	@$(REQUIRE) $(BUILD_PACKAGES)
	$(BATCH_EMACS) -l tools/build.el -f gradients-build-run README.org

test: $(VENV_STAMP)  ## check every recorded result, picture and gradient
	@$(REQUIRE) $(GUI_PACKAGES)
	@$(REQUIRE) $(BUILD_PACKAGES) $(TEST_PACKAGES)
	$(PYTHON) -m pytest tests

notebook: gradients.ipynb  ## gradients.ipynb for Jupyter users, from README.org

gradients.ipynb: README.org tools/notebook.py $(filter images/%,$(OUTPUTS)) $(VENV_STAMP)
	$(PYTHON) tools/notebook.py README.org $@

preview: $(VENV_STAMP)  ## a screenshot of the README as GitHub renders it, in .build/preview/
	@$(REQUIRE) $(BUILD_PACKAGES) $(TEST_PACKAGES)
	$(PYTHON) tools/preview.py README.org $(BUILD)/preview

bench: $(VENV_STAMP)  ## time the build against jupyter nbconvert; table and CSV in .build/bench/
	@$(REQUIRE) $(BUILD_PACKAGES)
	$(PYTHON) tools/bench.py

kernelspec: $(VENV_STAMP)  ## a Jupyter kernel "gradients" on the venv, for emacs-jupyter
	$(PYTHON) -m ipykernel install --user --name gradients --display-name "Python (gradients)"

venv: $(VENV_STAMP)  ## the Python environment, from the pinned requirements.txt

$(VENV_STAMP): requirements.txt
	@$(REQUIRE) 'python3-venv=python3 -c "import ensurepip"'
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

clean:  ## remove the venv and scratch files (not the committed outputs)
	rm -rf $(VENV) $(BUILD) gradients.ipynb

FORCE:
