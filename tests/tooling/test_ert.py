"""The ERT tests of tests/ert/, each file in an Emacs of its own: the
executor's and the build's Lisp checked on small Org snippets.  Run from
here so that they share the cores with the rest of the tooling's suite
instead of waiting before it: most of their time goes to waiting for
kernels.  A file of many tests is run in shares, each in an Emacs of its
own: whole, the executor's took a minute and a half on a loaded machine,
longer than the rest of a worker's share of the suite."""

import re

import pytest

from conftest import ROOT, emacs

ERT_FILES = sorted((ROOT / "tests" / "ert").glob("*-tests.el"))
# A file with more tests than this is run in as many shares as it takes.
TESTS_A_SHARE = 20


def shares(file):
    """(FILE, share, shares) for each share of FILE's tests."""
    tests = len(re.findall(r"^\(ert-deftest ", file.read_text(), re.M))
    count = max(1, -(-tests // TESTS_A_SHARE))
    return [(file, share, count) for share in range(count)]


RUNS = [run for file in ERT_FILES for run in shares(file)]


def test_there_are_ert_tests():
    assert len(ERT_FILES) >= 2


# Every COUNT-th test by name, from the SHARE-th.
SELECTOR = """(let ((names (sort (mapcar (lambda (test) (symbol-name (ert-test-name test)))
                                  (ert-select-tests t t))
                          #'string<)))
  (ert-run-tests-batch-and-exit
   `(satisfies ,(lambda (test)
                  (= (mod (cl-position (symbol-name (ert-test-name test)) names
                                       :test #'equal)
                          {count})
                     {share})))))"""


@pytest.mark.long
@pytest.mark.parametrize("file, share, count", RUNS,
                         ids=[f"{file.name}" + (f"-{share + 1}of{count}" if count > 1 else "")
                              for file, share, count in RUNS])
def test_ert(file, share, count):
    # Found on the load path: `load` (and so -l) would read a `$` or `~`
    # in the checkout's path, were it given the file's absolute name.
    run = emacs("-l", "ert", "-L", str(file.parent), "--eval", f'(load "{file.name}" nil t t)',
                "--eval", "(require 'cl-lib)",
                "--eval", SELECTOR.format(share=share, count=count),
                check=False, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 unexpected" in run.stderr, run.stderr
    ran = re.search(r"^Ran (\d+) tests", run.stderr, re.M)
    assert ran and int(ran.group(1)) > 0, run.stderr
