"""The ERT tests of tests/ert/, each file in an Emacs of its own: the
executor's and the build's Lisp checked on small Org snippets.  Run from
here so that they share the cores with the rest of the tooling's suite
instead of waiting before it: most of their time goes to waiting for
kernels."""

import pytest

from conftest import ROOT, emacs

ERT_FILES = sorted((ROOT / "tests" / "ert").glob("*-tests.el"))


def test_there_are_ert_tests():
    assert len(ERT_FILES) >= 2


@pytest.mark.long
@pytest.mark.parametrize("file", ERT_FILES, ids=lambda file: file.name)
def test_ert(file):
    # Found on the load path: `load` (and so -l) would read a `$` or `~`
    # in the checkout's path, were it given the file's absolute name.
    run = emacs("-l", "ert", "-L", str(file.parent), "--eval", f'(load "{file.name}" nil t t)',
                "-f", "ert-run-tests-batch-and-exit",
                check=False, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 unexpected" in run.stderr, run.stderr
