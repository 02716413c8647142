"""Sum the per-worker counts of the generated-model sweep: ``python -m tests.sweep_stats REPORT``."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def main(report: str) -> None:
    total: Counter = Counter()
    files = sorted(Path(report).parent.glob(Path(report).name + "*"))
    for path in files:
        total.update(json.loads(path.read_text()))
    Path(report).with_suffix(".total.json").write_text(json.dumps(dict(total), indent=1, sort_keys=True))
    print(f"sweep counts from {len(files)} worker file(s):")
    for key, count in sorted(total.items()):
        print(f"  {count:>8,}  {key}")


if __name__ == "__main__":
    main(sys.argv[1])
