"""Copy the benchmark result files into the README and the docs between their markers.

A block `<!-- BEGIN results/NAME.md -->` ... `<!-- END results/NAME.md -->` in README.md or
in any `docs/*.md` is replaced by the current content of benchmarks/results/NAME.md, so
tables are never typed. A block whose file does not exist (yet) is left as it is.

Two things change on the way, so a block reads the same from any file and names no machine:
- an absolute path into a checkout's `benchmarks/` folder (as a benchmark records the paths
  of its raw runs, e.g. `/home/me/mmbalance/benchmarks/results/raw/...`) is shown relative
  to the repository root (`benchmarks/results/raw/...`);
- a relative Markdown link or image (`![curve](benchmarks/results/rl_curve.png)`, written
  relative to the repository root) is rewritten relative to the file it lands in
  (`../benchmarks/results/rl_curve.png` in docs/).

Stdlib only.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK = re.compile(r"<!-- BEGIN (\S+) -->.*?<!-- END \1 -->", re.DOTALL)
# an absolute path up to a `benchmarks/` folder: /any/where/benchmarks/... -> benchmarks/...
ABSOLUTE = re.compile(r"(?<![\w.~/-])/(?:[\w.+-]+/)*?(?=benchmarks/)")
# the target of a Markdown link or image: ](target) or ](target "title")
LINK = re.compile(r"\]\(([^)\s]+)")


def targets(root: Path = ROOT) -> list[Path]:
    """The files whose markers are filled: README.md and every docs/*.md."""
    found = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [p for p in found if p.is_file()]


def relink(text: str, into: Path, root: Path = ROOT) -> str:
    """`text` (written relative to `root`) as it reads from the file `into`: absolute paths
    into `benchmarks/` made relative to the root, relative link targets made relative to
    `into`'s folder."""
    text = ABSOLUTE.sub("", text)
    folder = into.resolve().parent
    if folder == root.resolve():
        return text

    def fix(match: re.Match) -> str:
        target = match.group(1)
        if re.match(r"^([a-z][a-z0-9+.-]*:|#|/|\.\./)", target, re.IGNORECASE):
            return match.group(0)  # a URL, an anchor, an absolute or already relative path
        return "](" + Path(os.path.relpath(root.resolve() / target, folder)).as_posix()

    return LINK.sub(fix, text)


def fill(path: Path, root: Path = ROOT) -> list[str]:
    """Fill every block of `path` whose result file exists; return their names."""
    text = path.read_text()
    done = []

    def one(match: re.Match) -> str:
        name = match.group(1)
        result = root / "benchmarks" / name
        if not result.is_file():
            return match.group(0)
        done.append(name)
        body = relink(result.read_text().strip(), path, root)
        return f"<!-- BEGIN {name} -->\n{body}\n<!-- END {name} -->"

    new = BLOCK.sub(one, text)
    if new != text:
        path.write_text(new)
    return done


def update(readme: Path | None = None, root: Path = ROOT) -> list[str]:
    """Fill the markers of `readme` alone when given (a benchmark filling its own doc),
    else of README.md and every docs/*.md. Returns `FILE: NAME` per block filled."""
    files = [Path(readme)] if readme is not None else targets(root)
    done = []
    for path in files:
        try:
            shown = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            shown = str(path)
        done += [f"{shown}: {name}" for name in fill(path, root)]
    return done


if __name__ == "__main__":
    filled = update()
    print("updated:", "\n  ".join(["", *filled]) if filled else "nothing", file=sys.stdout)
