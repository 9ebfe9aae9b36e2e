"""Code lines per module (STYLE.md example 14): a file over ~400 lines is a prompt to rethink.

python scripts/loc.py            packages and their largest files
"""

import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "scalinglab"


def code_lines(path: Path) -> int:
    """Non-blank lines that are not comments (docstrings count: they are the documentation)."""
    return sum(1 for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#"))


def main() -> None:
    per_pkg, files = defaultdict(int), []
    for p in sorted(SRC.rglob("*.py")):
        n = code_lines(p)
        rel = p.relative_to(SRC)
        per_pkg[rel.parts[0] if len(rel.parts) > 1 else "(top)"] += n
        files.append((n, rel.as_posix()))
    for pkg, n in sorted(per_pkg.items(), key=lambda kv: -kv[1]):
        print(f"{n:6d}  {pkg}/")
    print(f"{sum(per_pkg.values()):6d}  total")
    big = [(n, f) for n, f in sorted(files, reverse=True) if n > 400]
    for n, f in big:
        print(f"  over 400: {f} ({n})", file=sys.stderr)


if __name__ == "__main__":
    main()
