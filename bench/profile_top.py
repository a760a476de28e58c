"""py-spy's collapsed stacks (``--format raw``) as two short tables: where the time is spent.

``self``: the frames the samples were in; ``total``: every frame on the stack (a function and all
it called). What the note of an optimisation quotes, instead of a flame graph nobody opens.

    python bench/profile_top.py PROFILE.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def _frame(raw: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: one row per function, not per line."""
    name, _, where = raw.partition(" (")
    file = where.split(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def top(path: Path, n: int) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        count = int(match["count"])
        frames = [_frame(f) for f in match["stack"].split(";") if f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    out = [f"{samples} samples"]
    for title, counter in (("self", own), ("total", total)):
        out.append(f"| {title} % | function |")
        out.append("|---|---|")
        out.extend(f"| {100 * c / samples:.1f} | `{f}` |" for f, c in counter.most_common(n))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(top(args.profile, args.top))


if __name__ == "__main__":
    main()
