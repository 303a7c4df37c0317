"""Copy the benchmark result files into the README between their markers.

A block `<!-- BEGIN results/NAME.md -->` ... `<!-- END results/NAME.md -->` is replaced by
the current content of benchmarks/results/NAME.md, so README tables are never typed.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def update(readme: Path = ROOT / "README.md") -> list[str]:
    text = readme.read_text()
    done = []

    def fill(match: re.Match) -> str:
        name = match.group(1)
        path = ROOT / "benchmarks" / name
        if not path.exists():
            return match.group(0)
        done.append(name)
        return f"<!-- BEGIN {name} -->\n{path.read_text().strip()}\n<!-- END {name} -->"

    pattern = re.compile(r"<!-- BEGIN (\S+) -->.*?<!-- END \1 -->", re.DOTALL)
    readme.write_text(pattern.sub(fill, text))
    return done


if __name__ == "__main__":
    print("updated:", ", ".join(update()) or "nothing")
