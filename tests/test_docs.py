"""The README and the docs: result blocks filled from their files, links that resolve.

`benchmarks/update_readme.py` fills the markers of README.md and every docs/*.md; these
tests run it on a copy of a small repository, and check the real README and docs for
broken relative links and leftover absolute paths."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("update_readme",
                                              ROOT / "benchmarks" / "update_readme.py")
update_readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_readme)


def _repo(tmp_path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "benchmarks" / "results" / "a.md").write_text(
        "table A\n![curve](benchmarks/results/a.png) [doc](docs/x.md) [web](https://x.org/benchmarks/y)"
        "\n| learned:/home/me/bench/benchmarks/results/raw/p | 1 |\n")
    (tmp_path / "benchmarks" / "results" / "b.md").write_text("table B\n")
    block = "<!-- BEGIN results/{0} -->\n{1}\n<!-- END results/{0} -->"
    (tmp_path / "README.md").write_text(
        "intro\n" + block.format("a.md", "old") + "\n" + block.format("missing.md", "(later)") + "\n")
    (tmp_path / "docs" / "results.md").write_text(
        "# R\n" + block.format("a.md", "old") + "\ntext\n" + block.format("b.md", "old b") + "\n")
    (tmp_path / "docs" / "other.md").write_text("no markers\n")
    return tmp_path


def test_fills_readme_and_every_doc(tmp_path):
    root = _repo(tmp_path)
    done = update_readme.update(root=root)
    assert done == ["README.md: results/a.md", "docs/results.md: results/a.md",
                    "docs/results.md: results/b.md"]
    readme = (root / "README.md").read_text()
    assert "table A" in readme and "old" not in readme
    # a block whose file is missing stays as it is
    assert "<!-- BEGIN results/missing.md -->\n(later)\n<!-- END results/missing.md -->" in readme
    doc = (root / "docs" / "results.md").read_text()
    assert "table A" in doc and "table B" in doc and "old" not in doc and doc.startswith("# R\n")
    assert (root / "docs" / "other.md").read_text() == "no markers\n"
    # filling twice changes nothing
    before = {p: p.read_text() for p in [root / "README.md", root / "docs" / "results.md"]}
    update_readme.update(root=root)
    assert before == {p: p.read_text() for p in before}


def test_paths_read_from_where_the_block_lands(tmp_path):
    root = _repo(tmp_path)
    update_readme.update(root=root)
    readme = (root / "README.md").read_text()
    doc = (root / "docs" / "results.md").read_text()
    assert "](benchmarks/results/a.png)" in readme and "](docs/x.md)" in readme
    assert "](../benchmarks/results/a.png)" in doc and "](x.md)" in doc
    for text in (readme, doc):
        assert "/home/me" not in text and "learned:benchmarks/results/raw/p" in text
        assert "](https://x.org/benchmarks/y)" in text  # URLs untouched


def test_one_file_when_given(tmp_path):
    root = _repo(tmp_path)
    done = update_readme.update(root / "docs" / "results.md", root=root)
    assert done == ["docs/results.md: results/a.md", "docs/results.md: results/b.md"]
    assert "old" in (root / "README.md").read_text()


def _docs():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_resolve():
    broken = []
    for path in _docs():
        for target in re.findall(r"\]\(([^)\s#]+)", path.read_text()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken


def test_no_machine_paths_and_a_short_readme():
    for path in _docs():
        text = path.read_text()
        assert not re.search(r"(?<![\w.~/-])/(?:work|home|Users)/", text), path
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
