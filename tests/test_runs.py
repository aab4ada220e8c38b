"""Run folders and their reports."""

from pathlib import Path

from conftest import broken_markdown_links

from genrep.runs import write_report


def test_report_links_pictures_relative_to_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Path("runs/demo")
    run.mkdir(parents=True)
    (run / "vae_samples.png").write_bytes(b"png")
    (run / "samples").mkdir()
    (run / "samples" / "last.png").write_bytes(b"png")
    report = write_report(run, title="t", summary={"a": 1.0},
                          pictures=[("vae", run / "vae_samples.png"), ("last", (run / "samples/last.png").resolve())])
    text = report.read_text()
    assert "](vae_samples.png)" in text and "](samples/last.png)" in text
    assert broken_markdown_links(tmp_path) == []


def test_broken_link_checker_finds_a_wrong_link(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("broken")  # not tmp_path: the autouse check would flag it
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"png")
    (tmp_path / "sub" / "report.md").write_text("![a](a.png) ![b](sub/a.png) [web](https://x.org/y.png)\n")
    assert broken_markdown_links(tmp_path) == [f"{tmp_path / 'sub' / 'report.md'}: sub/a.png"]
