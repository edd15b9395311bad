# The build of the notes.  `make help` lists the targets.

# The one-letter options make was given, on its command line or in
# MAKEFLAGS: they come first in MAKEFLAGS, as letters, so they are read
# before the line below adds to it (a dash before a long option would be
# read as its letters).  `override`: neither the command line nor, under
# the -e refused below, the environment may set it.
override GIVEN_OPTIONS := $(firstword -$(MAKEFLAGS))
# `make -n` and `make -q` only ask: they write nothing, not even the notes
# make keeps itself.
ONLY_ASKING := $(findstring n,$(GIVEN_OPTIONS))$(findstring q,$(GIVEN_OPTIONS))
# `make -e` gives the environment's variables precedence over the
# Makefile's own: a BUILD, PYTHON or LOCK that a CI system or a shell
# sets for its own ends would move the build's files, or run another
# Python.  Settings are given on the command line (`make test EMACS=...`).
ifneq ($(findstring e,$(GIVEN_OPTIONS)),)
$(error make -e (or an e in MAKEFLAGS) would let the environment replace the Makefile's own variables (BUILD, VENV, PYTHON...): run make without it, and give settings on its command line, as in `make test EMACS=emacs-30`)
endif
# Nor may the command line, or a MAKEFLAGS a calling make passes on
# (`make -f outer.mk BUILD=x` in a makefile that runs this one), set any
# variable but the settings below: VENV=/elsewhere made `make clean`
# remove that folder, PYTHON another Python run the tests.
SETTINGS := EMACS GUI_EMACS UV CHECK_WORKERS SHELL
# Make lists them with the spaces of their values escaped, which are
# taken out first: a value may hold words with = of their own
# (EMACS="env TERM=dumb emacs").
override GIVEN_VARIABLES := $(foreach word,$(subst \ ,^,$(-*-command-variables-*-)),\
  $(patsubst %:,%,$(patsubst %+,%,$(patsubst %?,%,$(firstword $(subst =, ,$(word)))))))
ifneq ($(filter-out $(SETTINGS),$(GIVEN_VARIABLES)),)
$(error $(firstword $(filter-out $(SETTINGS),$(GIVEN_VARIABLES))), given on make's command line or in MAKEFLAGS, is one of the Makefile's own variables, not a setting: the settings are $(SETTINGS))
endif
# `make -i` goes on past a step that failed, and the steps after it would
# record the work as done: a venv synced from a lock older than
# pyproject.toml, or not synced at all, would pass for up to date.
ifneq ($(findstring i,$(GIVEN_OPTIONS)),)
$(error make -i (or an i in MAKEFLAGS) would go on past a failed step and record it as done: run make without it)
endif
# `make -t` marks every step done without doing it: a venv never made, a
# build never run, would pass for up to date.
ifneq ($(findstring t,$(GIVEN_OPTIONS)),)
$(error make -t (or a t in MAKEFLAGS) would record every step as done without doing it: run make without it)
endif
# Every file it reads and writes is named relative to the notes' folder:
# `make -f path/to/Makefile` from another folder would make a .build/
# there, and `clean` remove one.  The folder is known by the build's own
# tools in it (the Makefile's path, in MAKEFILE_LIST, may hold a space,
# which make cannot hold in a name).  Goals of the caller's own (--eval,
# as the tooling's tests use) are theirs.
PROJECT_GOALS := help tangle run test check notebook preview bench kernelspec venv lock clean \
                 gradients.ipynb .build/% .venv/%
ifeq ($(wildcard tools/require-debian-packages),)
ifneq ($(filter $(PROJECT_GOALS),$(or $(MAKECMDGOALS),help)),)
# Said as the shell takes it: make's word functions would cut the path at
# a space.  This Makefile is the only one read so far but those MAKEFILES
# names, which come first.
THIS_MAKEFILE := $(strip $(if $(strip $(MAKEFILES)),$(subst $(strip $(MAKEFILES)) ,,$(strip \
                   $(MAKEFILE_LIST))),$(MAKEFILE_LIST)))
NOTES_FOLDER := $(subst /Makefile,,$(if $(filter /%,$(THIS_MAKEFILE)),,$(CURDIR)/)$(THIS_MAKEFILE))
$(error this Makefile builds the notes of its own folder, and $(CURDIR) is not one: run `make -C '$(subst ','\'',$(NOTES_FOLDER))' $(or $(MAKECMDGOALS),help)`, or make there)
endif
endif
# A line break in the checkout's path: every recipe that names a file
# there would be cut in two by the shell, each failing in its own way.
define LINE_BREAK


endef
ifneq ($(findstring $(LINE_BREAK),$(CURDIR)),)
$(error the checkout's path holds a line break, which no command make runs can take: rename its folders)
endif
# Set below only where they apply; otherwise empty, whatever the
# environment holds under their names (make reads it as variables).
VENV_CHANGED :=
EMACS_CHANGED :=
EMACS_REPLACED :=
PROGRAMS_MOVED :=
OUTPUTS_CHANGED :=
STALE :=
TANGLE_STALE :=
# Make's built-in rules would look for every prerequisite's source under
# RCS/ and SCCS/ and in a dozen languages' files: four times the cost of a
# `make test` that has nothing to do, paid by every run.  No target here
# is built by them.
MAKEFLAGS += --no-builtin-rules
.SUFFIXES:

VENV   := .venv
PYTHON := $(VENV)/bin/python
BUILD  := .build
# What was asked for besides `make clean` and `make help`, which build
# nothing.  For those, both are folders make fills; a file in the way would
# fail every step that writes there, each with an error of its own.  In
# another folder (`make -f`, a goal of the caller's own), none: make
# writes nothing there.
BUILD_GOALS := $(if $(wildcard tools/require-debian-packages),$(filter-out clean help,$(MAKECMDGOALS)))
# `make clean tangle`: what this make read of .venv and .build (which
# folders the venv has, the digests, the note of the Emacs) is gone once
# clean has run, so the other goals run in a make of their own after it.
AFTER_CLEAN := $(if $(filter clean,$(MAKECMDGOALS)),$(BUILD_GOALS))
ifneq ($(AFTER_CLEAN),)
BUILD_GOALS :=
endif
# What make and every program it starts inherit from the shell, asked
# once, before anything runs.  The programs make and the build's scripts
# run, each by its name on the PATH: without one, a check that runs it
# fails as if it had said no (a PATH without grep was read as a lock older
# than pyproject.toml).  The tests build on a PATH of these alone and the
# packages' programs, so that one a recipe starts to run is not left
# off.  Every Debian has them (coreutils, grep, sed,
# diffutils, findutils, util-linux, make).  A limit on the size of a file
# (`ulimit -f`), which cut off a picture, blocks.json or Python's
# bytecode where it fell: the bytecode, cut off in place, then broke
# every later `make test`.  A umask that takes the owner's own reading or
# writing away, under which the outputs are written for no one to read.
NEEDED_PROGRAMS := cat cmp cp cut env flock grep head id make mkdir mktemp mv nproc readlink rm \
                   sed sh sha256sum stat touch true xargs
ifneq ($(filter-out help,$(MAKECMDGOALS)),)
INHERITED := $(shell PATH='$(subst ','\'',$(PATH))'; for name in $(NEEDED_PROGRAMS); do \
    command -v $$name >/dev/null 2>&1 || printf 'missing:%s ' $$name; done; \
    [ "$$(ulimit -f)" = unlimited ] || printf 'file-size-limit '; \
    [ $$(( $$(umask) & 0600 )) -eq 0 ] || printf 'umask:%s' $$(umask))
MISSING_PROGRAMS := $(patsubst missing:%,%,$(filter missing:%,$(INHERITED)))
ifneq ($(MISSING_PROGRAMS),)
$(error $(MISSING_PROGRAMS) $(if $(word 2,$(MISSING_PROGRAMS)),are,is) not on the PATH ($(PATH)), and make runs $(if $(word 2,$(MISSING_PROGRAMS)),them,it): put /usr/bin on the PATH, where Debian has $(if $(word 2,$(MISSING_PROGRAMS)),them,it))
endif
# Each of them, and git, which the build asks what .gitignore ignores,
# must be the program it is named: one that only printed something
# passed for one that did its work (tools/programs-answer, which the
# CR LF check below names when git wrote it so; until then it is not
# read).
ifeq ($(MISSING_PROGRAMS),)
IMPOSTOR := $(shell PATH='$(subst ','\'',$(PATH))'; PROGRAMS_ONLY_ASKING='$(ONLY_ASKING)'; \
    IFS= read -r first < tools/programs-answer; case $$first in (*"$$(printf '\r')") exit;; esac; \
    set -- $(NEEDED_PROGRAMS) $$(command -v git >/dev/null 2>&1 && echo git); \
    . ./tools/programs-answer)
ifneq ($(IMPOSTOR),)
$(error $(IMPOSTOR))
endif
endif
ifneq ($(filter file-size-limit,$(INHERITED)),)
$(error the shell limits the size of the files make's programs write (`ulimit -f`), which would cut off a picture, gradients.py or Python's bytecode where it fell: run make under `ulimit -f unlimited`)
endif
ifneq ($(filter umask:%,$(INHERITED)),)
$(error the umask, $(patsubst umask:%,%,$(filter umask:%,$(INHERITED))), takes from a file's owner the reading or writing of it, and the outputs would be written so that their owner could not read or rewrite them: run make under `umask 022`)
endif
endif
# git's core.autocrlf=true writes every text file with CR LF line ends:
# the lock would then read as older than pyproject.toml, and the scripts
# of tools/ fail to start (make clean's too), each saying something else.
# Said once, here, for every goal but help.
ifneq ($(filter-out help,$(MAKECMDGOALS)),)
CR_LF_FILES := $(shell grep -lF "$$(printf '\r')" Makefile pyproject.toml requirements.lock tools/* 2>/dev/null)
$(if $(CR_LF_FILES),$(error $(firstword $(CR_LF_FILES))$(if $(word 2,$(CR_LF_FILES)), and $(words $(wordlist 2,999,$(CR_LF_FILES))) other files of the checkout end, ends) their lines in CR LF, as git writes them under core.autocrlf=true; clone the project again with `git -c core.autocrlf=false clone`))
endif
ifneq ($(BUILD_GOALS),)
$(foreach folder,$(VENV) $(BUILD),$(if $(wildcard $(folder)),$(if $(wildcard $(folder)/.),,\
  $(error $(folder) is $(if $(shell test -L $(folder) && echo link),a link to nowhere,a file), not a folder: make keeps $(if $(filter $(VENV),$(folder)),the Python environment,its scratch files) there; move it away, or run `make clean`))))
endif
# Every Python make starts (pytest, pip, the tools, the build's bridge)
# is the project's, whatever shell make is started from.  None of the
# caller's PYTHON* settings reaches it: a PYTHONPATH holding a numpy.py
# or a zmq.py, a PYTHONHOME of another Python, PYTHONWARNINGS=error, or
# PYTHONDONTWRITEBYTECODE, which would make every process compile NumPy,
# Jupyter and the rest anew, as uv installs them without bytecode.  Each
# reads and writes UTF-8, as the notes are, whatever the locale says
# (LC_ALL=POSIX).  The kernel's environment follows the same rule
# (kernel_environment in tools/kernel_bridge.py).
unexport $(filter PYTHON%,$(.VARIABLES))
export PYTHONUTF8 := 1
# And each orders sets of strings as the kernel does (kernel_environment):
# gradients.py, imported by `make test', printed a set in another order
# than the notes record.
export PYTHONHASHSEED := 0
# Nor do pytest's: PYTEST_ADDOPTS="--collect-only" would make `make test`
# pass with nothing checked, "-k x" deselect every check, and a plugin
# named in PYTEST_PLUGINS (or none loaded at all) change what runs.
unexport PYTEST_ADDOPTS PYTEST_PLUGINS PYTEST_DISABLE_PLUGIN_AUTOLOAD
# An environment activated in the caller's shell (a venv's bin/activate,
# conda activate, conda's base one included) is not the project's: make
# runs as after `deactivate`, so that its python3 does not make the venv,
# nor its dot draw the pictures.
ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
export PATH := $(shell set -f; IFS=:; kept=; for folder in $$PATH; do \
    case "$$folder" in ("$${VIRTUAL_ENV:-/-}/bin"|"$${CONDA_PREFIX:-/-}/bin") ;; \
                       (*) kept="$$kept$${kept:+:}$$folder" ;; esac; done; printf '%s' "$$kept")
endif
unexport VIRTUAL_ENV $(filter CONDA%,$(.VARIABLES))
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
# Under a UTF-8 locale, whatever the caller's: Emacs decodes the names of
# files it is given (the checkout's path among them) by the locale's
# coding before any Lisp runs, and under ISO-8859-1 a checkout /tmp/café
# was another folder by the time the build read its own files as UTF-8.
# C.UTF-8 is built into the C library; the build says nothing in any
# language but English.
BATCH_EMACS := env LC_ALL=C.UTF-8 $(EMACS) -Q --batch
# One build of the notes at a time: `make -j tangle test`, or MAKEFLAGS=-j
# in the environment, would run two kernels on the same notes, each
# writing .build/; the second waits, then finds the first's run to reuse.
# Emacs itself holds the lock (no flock process between make and Emacs),
# so Ctrl-C reaches Emacs as before and make waits for it to clean up.
# The lock is the notes' folder, not a file in .build/: `make clean` or
# `git clean` during a build would remove that file, and the next build
# lock a new one beside the running build.  `make clean` takes the lock
# too, rather than remove the venv and scratch files of a running build.
# A build's kernel bridge inherits the lock from Emacs, and its kernel's
# supervisor from the bridge, which keep it until the kernel and all it
# started are gone, so that a build started as the previous one is
# interrupted (or its bridge killed) waits for them.
# Run through sh, as are tools/require-debian-packages below: a copy that
# lost its execute bits (a zip, a FAT disk) runs them all the same.
BUILD_LOCK  := sh tools/one-build-at-a-time
BUILD_EMACS := $(BUILD_LOCK) $(BATCH_EMACS)
# build.el is found on the load path: `load' (and so -l) reads $HOME,
# ${HOME}, $$, ~user and a second / in an absolute file name, and in a
# checkout whose path holds one would load another file or none.  Emacs
# takes the folders of its load path as they are; build.el then makes it
# take every name under the checkout so.  Through load-build.el, which
# says in one line why a library the build loads failed to.
LOAD_BUILD_EL := --eval '(let ((load-path (cons (expand-file-name "tools") load-path))) (load "load-build.el" nil t t))'

# The exact versions the notes are tested with, compiled from pyproject.toml.
LOCK := requirements.lock
# uv from the PATH; without one, the copy `make` installs under .build/
# (not in the venv, whose packages `uv pip sync` keeps to the lock).
# Recipes quote it, as a path that may hold a space; only the copy of our
# own, a relative path, is ever a prerequisite.
UV_HOME  := $(BUILD)/uv
UV_OURS  := $(UV_HOME)/bin/uv
UV       := $(or $(shell command -v uv),$(UV_OURS))
UV_MADE  := $(if $(filter $(UV_OURS),$(UV)),$(UV_OURS))
# Its path as one word for the shell, whatever it holds ($, quotes, a
# backtick, a backslash): in single quotes, each of its own as '\''.
UV_QUOTED = '$(subst ','\'',$(UV))'
# uv keeps what it downloads under the home folder ($UV_CACHE_DIR, or
# $XDG_CACHE_HOME/uv, or ~/.cache/uv), and stops before installing
# anything where it cannot make that folder (a service user's
# HOME=/nonexistent, a home on a read-only disk): there it runs without a
# cache, as pip does.  The folder is uv's own answer (`uv cache dir`):
# with HOME unset or a relative XDG_CACHE_HOME, uv looks elsewhere than
# those variables say.  Recursive, so that only a recipe that runs uv
# looks; never under make -n, which writes nothing, that folder included.
# make expands a recipe whole before its first line, which installs our
# own uv on a fresh clone: uv is not there yet to ask, and the folder is
# found as uv finds it, or, where uv looks elsewhere, taken as unusable
# (every fresh clone downloaded everything again without a cache).
UV_CACHE_USABLE = $(shell if command -v $(UV_QUOTED) >/dev/null 2>&1; then \
                        folder=$$($(UV_QUOTED) cache dir 2>/dev/null); \
                    elif [ -n "$$UV_CACHE_DIR" ]; then folder=$$UV_CACHE_DIR; \
                    else folder=$${XDG_CACHE_HOME:-$${HOME:+$$HOME/.cache}}; \
                        case $$folder in (/?*) folder=$$folder/uv ;; (*) folder= ;; esac; fi; \
                    [ -n "$$folder" ] && mkdir -p "$$folder" 2>/dev/null && [ -w "$$folder" ] && echo yes)
RUN_UV = $(if $(ONLY_ASKING),,$(if $(UV_CACHE_USABLE),,UV_NO_CACHE=1 ))$(UV_QUOTED)
# uv runs the machine's python3 and never downloads a Python of its own.
export UV_PYTHON_DOWNLOADS  := never
export UV_PYTHON_PREFERENCE := only-system
# Of the caller's uv settings, only those that say where packages come
# from and how they travel (an index or mirror, its credentials and
# certificates, timeouts, the cache, the way files are linked) reach uv:
# the lock says what is installed.  A constraint or override file, a
# date packages must predate (UV_EXCLUDE_NEWER), hashes not checked, or
# another Python would give uv's own error, or another venv than the lock's.
# uv's configuration file (uv.toml) is read for the venv, as it may name
# a mirror, but not for `make lock', which compiles the same pyproject.toml
# to the same bytes on every machine.
UV_SETTINGS_KEPT := UV_PYTHON_DOWNLOADS UV_PYTHON_PREFERENCE \
    UV_INDEX UV_INDEX_% UV_DEFAULT_INDEX UV_INDEX_URL UV_EXTRA_INDEX_URL UV_FIND_LINKS \
    UV_INDEX_STRATEGY UV_KEYRING_PROVIDER UV_INSECURE_HOST UV_NATIVE_TLS UV_SYSTEM_CERTS \
    UV_CREDENTIALS_DIR UV_OFFLINE UV_HTTP_TIMEOUT UV_HTTP_CONNECT_TIMEOUT UV_HTTP_RETRIES \
    UV_REQUEST_TIMEOUT UV_CONCURRENT_DOWNLOADS UV_CONCURRENT_INSTALLS UV_CONCURRENT_BUILDS \
    UV_CACHE_DIR UV_NO_CACHE UV_LINK_MODE UV_NO_PROGRESS UV_CONFIG_FILE UV_NO_CONFIG
unexport $(filter-out $(UV_SETTINGS_KEPT),$(filter UV_%,$(.VARIABLES)))
# Every dependency group of pyproject.toml goes into the lock.
LOCK_GROUPS = $(shell sed -n '/^\[dependency-groups\]/,/^\[/s/^\([A-Za-z0-9_.-]*\) = \[.*/--group \1/p' pyproject.toml)
# The lock's last line names the pyproject.toml it was compiled from by
# its hash: file times cannot tell, as git sets them at checkout.
LOCK_SOURCE = \# compiled from the pyproject.toml with sha256 $$(sha256sum < pyproject.toml | cut -c1-64)

# The venv matches the lock when its stamp is newer than pyproject.toml,
# the lock, its interpreter, site-packages and each folder in it (a
# package's own), and bin/: a folder changes whenever something in it is
# added or removed, so a package added, removed or with a file of its top
# folder gone is noticed, and make compares them without running anything.
# uv installs no bytecode: Python writes it on first import, into a
# __pycache__ in each folder of modules, which is made with the venv for
# site-packages and each package's top folder, so that writing there later
# changes none of those folders.
VENV_STAMP    := $(VENV)/.installed
SITE_PACKAGES := $(wildcard $(VENV)/lib/python3*/site-packages)
VENV_FOLDERS  := $(SITE_PACKAGES) $(wildcard $(VENV)/bin) \
                 $(filter-out %/__pycache__/,$(wildcard $(addsuffix /*/,$(SITE_PACKAGES))))

# The installed packages one of whose files is gone, by name, one a line:
# uv, like pip, trusts a package's metadata, and would keep a NumPy whose
# folder was deleted.  Each package's RECORD lists its files.
define BROKEN_PACKAGES
import csv, pathlib, sys
for record in pathlib.Path(sys.argv[1]).glob("*.dist-info/RECORD"):
    with open(record, newline="") as rows:
        files = [row[0] for row in csv.reader(rows) if row and not row[0].endswith(".pyc")]
    if not all((record.parent.parent / name).exists() for name in files):
        print(record.parent.name.split("-")[0])
endef
export BROKEN_PACKAGES

# FORCE unless every file a list of digests (sha256sum's format, written
# by the build) names still has those bytes: make goes by times, and a
# file put back with its old time (cp -p, rsync -a, tar) keeps it.
# Said by the check itself: a shell that cannot run (SHELL=/bin/false, no
# process left) says nothing, which must not pass for "the same".
changed = $(if $(filter same,$(shell sha256sum --check --status $(1) 2>/dev/null && echo same)),,FORCE)

# The venv's stamp holds the digests of pyproject.toml and the lock it was
# made from: a lock put back with its old time is another lock all the same.
# So does an interpreter replaced by another version under the same name
# (an upgrade of the system's python3): the venv's packages are in the
# old version's lib/pythonX.Y/, where the new one never looks.
ifneq ($(BUILD_GOALS),)
VENV_CHANGED := $(call changed,$(VENV_STAMP))
VENV_INTERPRETER := $(notdir $(realpath $(PYTHON)))
ifneq ($(filter python3.%,$(VENV_INTERPRETER)),)
ifeq ($(wildcard $(VENV)/lib/$(VENV_INTERPRETER)/site-packages),)
VENV_CHANGED := FORCE
endif
endif
endif

# What the last successful `make tangle` produced, listed by the build
# itself (so no second reading of README.org can disagree with Org's) and
# written last, so it is the build's stamp too: the outputs are only
# rewritten when their bytes change, and their timestamps cannot say this.
OUTPUTS_LIST := $(BUILD)/outputs
OUTPUTS      := $(shell cat $(OUTPUTS_LIST) 2>/dev/null)
# Their digests as that build installed them, which sha256sum checks: one
# put back with an older time (cp -p, rsync -a, tar) is no newer than the
# build's stamp, yet not what it wrote.
ifneq ($(BUILD_GOALS),)
ifneq ($(OUTPUTS),)
OUTPUTS_CHANGED := $(call changed,$(OUTPUTS_LIST).sha256)
endif
endif
# An empty rule for each, as inputs.mk has for what the build read: one
# that is gone (deleted, or a link to nowhere, which make would count as
# there by its name and then fail on, "No rule to make target") makes the
# build run again, and say what is wrong with it if anything is.
ifneq ($(OUTPUTS),)
$(OUTPUTS):
endif

# Everything the notes make, and blocks.json, what Org read of each block
# and what it produced: made without touching the committed outputs, for
# `make test` to compare them with.  `make tangle` brings it up to date too.
PRODUCED := $(BUILD)/produced/blocks.json
# Which Emacs and Org read the notes last: with another one (`make test
# EMACS=...`, an Org on EMACSLOADPATH) the build reads them again.
# `make -n` and `make -q` write nothing: they take it as changed instead,
# as does a make that cannot write .build/ (a read-only checkout), where
# the build then says why, as README.org's, rather than make stop on its
# own open().  EMACSLOADPATH names folders as they are spelled ($(value):
# make would read a `$` in it as one of its variables), and the note is
# written by make itself: through the shell, a quote in the path would
# end the string and leave no note, so that every make would build again.
EMACS_ID := $(BUILD)/emacs-id
EMACS_NOW := $(EMACS) $(value EMACSLOADPATH)
ifneq ($(BUILD_GOALS),)
ifneq ($(EMACS_NOW),$(file <$(EMACS_ID)))
# Nor is it written for an EMACS that names no program: the build refuses
# that, and the last good build stays good.
ifeq ($(if $(ONLY_ASKING),,$(shell command -v $(firstword $(EMACS)) >/dev/null && \
        mkdir -p $(BUILD) 2>/dev/null && touch $(EMACS_ID) 2>/dev/null && echo writable)),writable)
$(file >$(EMACS_ID),$(EMACS_NOW))
else
EMACS_CHANGED := FORCE
$(EMACS_ID):
endif
endif
endif

# Emacs itself, the Lisp the last build loaded (Org's among it) and the
# folders of its load path, listed by the build with what `stat` said of
# them then: an Emacs or Org upgraded or replaced in place, under the same
# command and EMACSLOADPATH, or a library added where Emacs would load it
# first, builds again.  `stat`, not digests: they are tens of megabytes.
# In the C locale, as the build's: under fr_FR or de_DE, stat writes the
# fraction of a second after a comma, and every make built again.
EMACS_FILES := $(BUILD)/produced/emacs-files
ifneq ($(BUILD_GOALS),)
EMACS_REPLACED := $(shell LC_ALL=C xargs -r -d '\n' -a $(EMACS_FILES) stat -L -c '%d %i %s %.9Z' -- \
  2>/dev/null | cmp -s - $(EMACS_FILES).stat || echo FORCE)
endif

# The programs the build looked up on the PATH (Graphviz's dot), each with
# the file it found, links followed: another one first on the PATH now, a
# link on the way pointed elsewhere, or none, is another program, which
# the files listed above, those found then, cannot tell.  Compared as
# files, not as spelled (a PATH entry with a trailing slash, a relative
# one).  Under the PATH make exports (an activated venv's set aside),
# which $(shell) does not see by itself.  Said by the check itself, as
# `changed' below is.
ifneq ($(BUILD_GOALS),)
PROGRAMS_MOVED := $(if $(filter same,$(shell PATH='$(subst ','\'',$(PATH))'; \
    { while read -r name file; do \
    [ "$$(readlink -f "$$(command -v "$$name")")" = "$$file" ] || exit; \
    done < $(BUILD)/produced/programs && echo same; } 2>/dev/null)),,FORCE)
endif

# The build's own files and what it read besides README.org (a #+SETUPFILE,
# a file a block reads), and the digests of all of them and README.org:
# a change to any of them builds again, even one put back with an older
# time.  The build lists them itself.
-include $(BUILD)/produced/inputs.mk
ifneq ($(BUILD_GOALS),)
STALE := $(call changed,$(BUILD)/produced/inputs.sha256)
# make tangle's own: the build behind make test rewrites the one above.
TANGLE_STALE := $(call changed,$(BUILD)/outputs.inputs.sha256)
endif

# Debian packages, each with the check that tells it is there.
# A program a variable names (EMACS, GUI_EMACS) comes from Debian's PACKAGE
# under its DEFAULT name only; another is the caller's, which no package
# would install: a missing one is named instead (tools/require-debian-packages).
# Either, when it is not plainly the default, is run once as the build
# runs it, and one that does not answer as an Emacs is named.
program = $(if $(filter $(3),$(firstword $($(1)))),'$(2)=command -v $(3)') \
          $(if $(filter-out $(3),$($(1))),'$(1)=$($(1))')
BUILD_PACKAGES := $(call program,EMACS,emacs-nox,emacs) 'graphviz=command -v dot'
TEST_PACKAGES  := 'ruby-github-markup=command -v github-markup' \
                  'ruby-org=ruby -e "require %q(org-ruby)"' \
                  'chromium=command -v chromium' \
                  'tmux=command -v tmux'
# Debian installs either emacs-nox or emacs-gtk, and emacs-gtk gives the
# build its `emacs` too: these go first, or apt-get would be asked for both.
GUI_PACKAGES   := $(call program,GUI_EMACS,emacs-gtk,emacs-gtk) 'xvfb=command -v Xvfb' \
                  'xdotool=command -v xdotool'
REQUIRE := sh tools/require-debian-packages
# A python3 there, and one the lock can use: uv would say so in a page of
# its resolver's reasoning, pip as a version of uv it cannot find.  Asked
# once, its version compared by the shell: a python3 may be a shim
# (pyenv's starts some thirty shells a call).
# One that never answers (a shim waiting on something) would hold make
# without a word: given a minute (answer_limit seconds, as
# tools/require-debian-packages gives the programs it asks), by coreutils'
# timeout at its own path.
ANSWER_LIMIT := $(or $(answer_limit),60)
WITHIN_A_MINUTE := $(if $(wildcard /usr/bin/timeout),/usr/bin/timeout -k 5 $(ANSWER_LIMIT))
REQUIRE_PYTHON := $(REQUIRE) 'python3=command -v python3' && { \
    version=$$($(WITHIN_A_MINUTE) python3 -c 'import platform; print(platform.python_version())' 2>/dev/null); \
    case $$? in (124|137) [ -z "$(WITHIN_A_MINUTE)" ] || { \
        echo "python3 ($$(command -v python3)) did not answer in $(ANSWER_LIMIT) s: put a working Python 3.11 or newer first on the PATH, or see what it waits for" >&2; \
        exit 1; };; esac; \
    case $$version in ([0-9]*.[0-9]*) ;; (*) false ;; esac || { \
    echo "python3 ($$(command -v python3)) does not run: put a working Python 3.11 or newer first on the PATH" >&2; \
    exit 1; }; \
    major=$${version%%.*} minor=$${version\#*.}; minor=$${minor%%.*}; \
    [ "$$major" -gt 3 ] 2>/dev/null || { [ "$$major" = 3 ] && [ "$$minor" -ge 11 ] 2>/dev/null; } || { \
    echo "python3 is Python $$version: the lock needs 3.11 or newer, as Debian 12 has; put one first on the PATH" >&2; \
    exit 1; }; }

.DEFAULT_GOAL := help
.PHONY: help tangle run test check notebook preview bench kernelspec venv lock clean FORCE
# Each is written whole, by a rename, once its build has done all its
# work: make, stopped by Ctrl-C while the build stops its kernel after
# that, would delete a stamp that holds, and build again for nothing.
.PRECIOUS: $(OUTPUTS_LIST) $(PRODUCED) gradients.ipynb

help:  ## list the targets
	@sed -n 's/^\([a-z]*\):.*## \(.*\)/  make \1\t\2/p' Makefile | expand -t 20

ifeq ($(AFTER_CLEAN),)
tangle: $(OUTPUTS_LIST)  ## gradients.py and the pictures in images/, from README.org

$(OUTPUTS_LIST): README.org $(VENV_STAMP) $(EMACS_ID) $(EMACS_CHANGED) $(EMACS_REPLACED) $(PROGRAMS_MOVED) $(OUTPUTS) $(OUTPUTS_CHANGED) $(TANGLE_STALE)
	$(call build,tangle)

run: $(VENV_STAMP)  ## restart and run all: every result in README.org, then what make tangle makes
	$(call build,run)

$(PRODUCED): README.org $(VENV_STAMP) $(EMACS_ID) $(EMACS_CHANGED) $(EMACS_REPLACED) $(PROGRAMS_MOVED) $(STALE)
	$(call build,produce)

# The build's exit status alone is not trusted: between make and Emacs
# run sh, flock and env, and Emacs loads libraries, any of which may end
# with 0 having run nothing (a wrapper, a library that calls kill-emacs).
# The recipe writes "started" into a note this make names before the
# build, which the build replaces with "finished" once all its work is
# done; make reads it back with the shell's builtins.  "started" is a
# build that ended early; no note at all, one whose scratch folder a make
# clean removed once the build had ended (and a make after it may already
# have made again), or a scratch folder the build cannot write in, which
# it says itself.  Named by make's own process, so that two makes at
# once read each its own.
MAKE_PID = $(shell echo $$PPID)
$(OUTPUTS_LIST) $(PRODUCED) run: export GRADIENTS_BUILD_FINISHED = $(BUILD)/finished.$(MAKE_PID)
build-finished = $(if $(ONLY_ASKING),,@{ read -r said < "$$GRADIENTS_BUILD_FINISHED"; } 2>/dev/null; \
    rm -f "$$GRADIENTS_BUILD_FINISHED"; [ "$$said" != started ] || { \
    echo "the build of README.org ended as if it had succeeded without doing its work: a program between make and Emacs, or a library Emacs loaded, ended it early (see EMACSLOADPATH, and what the PATH finds first)" >&2; exit 1; })
# The recipe of each build (tangle, run, produce): the packages it needs,
# the build itself, then the reading of its note.
define build
@mkdir -p $(BUILD) && $(REQUIRE) $(BUILD_PACKAGES) && \
  { echo started > "$$GRADIENTS_BUILD_FINISHED" || :; } 2>/dev/null
$(call with-output,$(BUILD_EMACS) $(LOAD_BUILD_EL) -f gradients-build-$(1) README.org)
$(build-finished)
endef

# pytest brings $(PRODUCED) up to date itself (tests/conftest.py), with
# make, while it imports what the checks need: the two overlap.
# A command said as make says it (and under make -s, not), then run with its output (or its error
# output) going nowhere when make's own is closed (`make test >&-`,
# `2>&-`): Python starts with no sys.stdout or sys.stderr there, and
# pytest failed on its report, and the build it starts on its first line;
# Emacs, which cannot write what it says, exits 1 having built all; the
# exit status still tells.  `make -n` shows the command alone.  In place of the shell, so that the signal
# make passes on to its child when it is stopped (`kill`, a CI's timeout)
# reaches pytest, which stops its fixtures and builds: under the shell,
# which waits for a command it runs, pytest and the build went on.
with-output = $(if $(ONLY_ASKING),$(1),@[ -e /proc/self/fd/2 ] || exec 2>/dev/null; \
    (exec 3>&1) 2>/dev/null || exec >/dev/null; \
    $(if $(findstring s,$(GIVEN_OPTIONS)),,printf '%s\n' '$(subst ','\'',$(1))';) exec $(1))
# Under make -n, which runs no pytest, the build it would start is shown
# as make would run it.
test: $(VENV_STAMP) $(if $(ONLY_ASKING),$(PRODUCED))  ## check the notes: every recorded result, output and gradient
	$(call with-output,$(PYTHON) -m pytest -p no:xdist tests)

# The ERT tests of tests/ert/ run among them (tests/tooling/test_ert.py).
# Two workers a core: a good part of the tests' time goes to waiting for
# kernels, timeouts and screens, which the other workers fill (on 2 cores,
# the processors stood idle for 50 core-seconds of a run with 2 workers,
# 16-21 with 3, 8 with 4).
CHECK_WORKERS = $(shell echo $$(( $$(nproc) * 2 )))
check: test  ## make test, then the tooling's own suite: executor, Emacs, browser, bad input
	@$(REQUIRE) $(GUI_PACKAGES)
	@$(REQUIRE) $(TEST_PACKAGES)
	$(call with-output,$(PYTHON) -m pytest -n $(CHECK_WORKERS) --dist loadgroup tests/tooling)

notebook: gradients.ipynb  ## gradients.ipynb for Jupyter users, from README.org

gradients.ipynb: $(PRODUCED) tools/notebook.py $(filter images/%,$(OUTPUTS))
	$(PYTHON) tools/notebook.py README.org $@

preview: $(VENV_STAMP)  ## a screenshot of the README as GitHub renders it, in .build/preview/
	@$(REQUIRE) $(BUILD_PACKAGES) $(TEST_PACKAGES)
	$(PYTHON) tools/preview.py README.org $(BUILD)/preview

bench: $(VENV_STAMP) | $(UV_MADE)  ## time the build against jupyter nbconvert, the venv against pip; in .build/bench/
	@$(REQUIRE) $(BUILD_PACKAGES)
	$(PYTHON) tools/bench.py

# Into the user's Jupyter folder, which must be writable: Jupyter would
# suggest --user, given already.  ipykernel leaves the copy it makes
# first in the temporary folder: one of the build's own, removed after.
kernelspec: $(VENV_STAMP)  ## a Jupyter kernel "gradients" on the venv, for emacs-jupyter
	@folder=$$("$(PYTHON)" -c 'from jupyter_core.paths import jupyter_data_dir; print(jupyter_data_dir())') && \
	{ mkdir -p "$$folder/kernels" 2>/dev/null && [ -w "$$folder/kernels" ]; } || { \
	    echo "cannot write $$folder/kernels, where Jupyter keeps your kernels (HOME=$$HOME): make kernelspec with a HOME you can write" >&2; exit 1; }
	@mkdir -p $(BUILD) && scratch=$$(mktemp -d "$$PWD/$(BUILD)/kernelspec-XXXXXX") && \
	TMPDIR="$$scratch" "$(PYTHON)" -m ipykernel install --user --name gradients \
	    --display-name "Python (gradients)"; status=$$?; rm -rf "$$scratch"; exit $$status

ifeq ($(GRADIENTS_VENV_UNDER_LOCK),)
venv: $(VENV_STAMP)  ## the Python environment, exactly as requirements.lock says

# Made under the notes' lock, as the build is and make clean removes it:
# a make clean started meanwhile waits for the venv (it removed the
# folders uv was filling, and uv failed with an error of its own, or the
# clean on what uv had half made), and one this make waited for has
# removed what it read of .venv/ and .build/ (our uv among them).  So a
# make of its own, started once the lock is held, reads them anew and
# makes the venv; under make -n it only says how, taking no lock.
$(VENV_STAMP): export GRADIENTS_VENV_UNDER_LOCK = yes
$(VENV_STAMP): pyproject.toml $(LOCK) $(PYTHON) $(VENV_FOLDERS) $(VENV_CHANGED)
	@$(if $(ONLY_ASKING),,$(BUILD_LOCK)) $(MAKE) --no-print-directory venv
else
# The make started under the lock.  Its goal has a recipe that does
# nothing, so that where the make this one waited for made the venv, it
# says nothing.
venv: $(VENV_STAMP)
	@:

# uv is made only when the venv is: a venv that matches needs no uv.  A
# package whose files are gone is installed again: it still counts as
# installed for uv, whose sync would leave it broken.
$(VENV_STAMP): pyproject.toml $(LOCK) $(PYTHON) $(VENV_FOLDERS) $(VENV_CHANGED)
	@grep -qxF "$(LOCK_SOURCE)" $(LOCK) || \
	    { echo "$(LOCK) is older than pyproject.toml: run \`make lock\`" >&2; exit 1; }
	@[ -x $(UV_QUOTED) ] || $(MAKE) --no-print-directory $(UV_OURS)
	@$(REQUIRE_PYTHON)
	@! pwd -P | LC_ALL=C.UTF-8 grep -qavx '.*' || { \
	    echo "the checkout's path is not valid UTF-8, and uv makes no venv there: rename its folders" >&2; exit 1; }
	$(RUN_UV) venv --quiet --allow-existing --python "$$(command -v python3)" "$(VENV)"
	$(RUN_UV) pip sync --quiet --python "$(PYTHON)" $(LOCK)
	@broken=$$(for dir in "$(VENV)"/lib/python3*/site-packages; do \
	               "$(PYTHON)" -I -c "$$BROKEN_PACKAGES" "$$dir"; done) || exit 1; \
	if [ -n "$$broken" ]; then \
	    echo "files of" $$broken "are missing from $(VENV): installing them again"; \
	    $(RUN_UV) pip sync --quiet --python "$(PYTHON)" \
	        $$(for name in $$broken; do echo --reinstall-package $$name; done) $(LOCK); \
	fi
	@for dir in "$(VENV)"/lib/python3*/site-packages "$(VENV)"/lib/python3*/site-packages/*/; do \
	    for module in "$${dir%/}"/*.py; do [ -e "$$module" ] && mkdir -p "$${dir%/}/__pycache__"; break; done; \
	done
	@sha256sum pyproject.toml $(LOCK) > "$@.new" && mv "$@.new" "$@"
endif

# A missing or dangling interpreter counts as changed, so the venv is
# made again instead of every target failing on it.
$(PYTHON):

# For Debian 12 on x86_64 and its Python 3.11, whatever machine runs it,
# so that the same pyproject.toml always compiles to the same bytes.  Its
# hashes cover every platform's files of each version.
lock: | $(UV_MADE)  ## compile requirements.lock again from pyproject.toml
	$(RUN_UV) pip compile --quiet --no-config pyproject.toml $(LOCK_GROUPS) \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
	    --generate-hashes --custom-compile-command 'make lock' --output-file $(LOCK)
	@echo "$(LOCK_SOURCE)" >> $(LOCK)

# Into a folder of its own: Debian's python3 refuses packages installed
# into itself (PEP 668), and a venv for uv would first spend seconds
# installing pip.  The version the lock was made and tested with.  pip
# keeps the user's index and certificates, but none of the settings that
# would refuse --target or send it elsewhere (PIP_REQUIRE_VIRTUALENV,
# PIP_USER, PIP_TARGET... in the environment or a pip.conf: the
# environment's win).  Each make installs into a
# folder of its own, renamed into place whole: two makes started at once
# on a fresh checkout never see half of it, and the second keeps the
# first's.  The version and the digests of its wheels are in
# tools/uv-requirements.txt: a pip that requires hashes (PIP_REQUIRE_HASHES,
# or require-hashes in a pip.conf) finds them there.
$(UV_OURS):
	@echo "uv is not on the PATH: installing it from PyPI into $(UV_HOME)/"
	@$(REQUIRE_PYTHON)
	@$(REQUIRE) 'python3-pip=python3 -m pip --version'
	@mkdir -p $(BUILD) 2>/dev/null && [ -w $(BUILD) ] || { \
	    echo "cannot write $(BUILD)/ in "'$(subst ','\'',$(CURDIR))'", where make installs uv (a read-only checkout?): put uv on the PATH, or build in a copy of your own" >&2; exit 1; }
	@new=$(UV_HOME).new-$$$$ && rm -rf "$$new" && \
	unset PIP_TARGET PIP_PREFIX PIP_ROOT PIP_PYTHON && \
	PIP_REQUIRE_VIRTUALENV=false PIP_USER=false python3 -m pip install -qq \
	    --disable-pip-version-check --require-hashes --target "$$new" \
	    -r tools/uv-requirements.txt || { rm -rf "$$new"; exit 1; }; \
	if ! mv -T "$$new" $(UV_HOME) 2>/dev/null; then \
	    if [ -x $(UV_OURS) ]; then rm -rf "$$new"; \
	    else rm -rf $(UV_HOME) && mv -T "$$new" $(UV_HOME); fi; \
	fi

else
# Each goal but clean, once clean has run: by one make, which reads
# .venv and .build anew.  Its $(MAKE) runs under -n too, and says what
# it would do.
.NOTPARALLEL:
$(AFTER_CLEAN): after-clean ;
.PHONY: after-clean
after-clean: clean
	@$(MAKE) --no-print-directory $(AFTER_CLEAN)
endif

clean:  ## remove the venv and scratch files (not the committed outputs)
	$(BUILD_LOCK) rm -rf "$(VENV)" "$(BUILD)" gradients.ipynb

FORCE:
