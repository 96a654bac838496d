"""inspect's peak memory as the rows grow, against a bare Polars parse of the same file.

Usage: python bench/inspect_memory.py [ROWS ...]   (default 1,000,000 4,000,000 16,000,000)

Two files per size (generated once under data/, the smaller sizes as the first rows of
the largest): ``leanfit make-data``'s (a text column of up to 100,000 levels) and
``synth.write_many_levels``'s (a unique id and a ``merchant`` column that gains a
level on every tenth row, past the cap of exactly counted levels). For each:
``leanfit inspect --memory-limit 1GB`` and a bare streaming Polars parse
(``collect_batches`` of the whole file), each in its own subprocess under GNU time
(peak RSS; wall and CPU seconds, start-up included). Prints the peaks, their growth
from the smallest size and inspect's ratios to the bare parse.

leanfit is not imported here: it sets ``POLARS_CSV_CHUNK_SIZE`` in its process, which
a child would take as the user's choice (1 MiB reads instead of inspect's 4 MiB).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from recipes import measured

SIZES = [int(a) for a in sys.argv[1:]] or [1_000_000, 4_000_000, 16_000_000]
BARE = (
    "import sys, polars as pl\n"
    "for _ in pl.scan_csv(sys.argv[1], infer_schema_length=10_000).collect_batches(): pass"
)
WRITE = "import sys\nfrom leanfit.synth import {}\n{}(sys.argv[1], rows=int(sys.argv[2]), seed=1)"
WRITERS = {"make-data": "write_data", "many-levels": "write_many_levels"}


def files(kind: str) -> dict[int, Path]:
    """The file of each size, made once: the largest generated, the others its head."""
    largest = Path(f"data/bench-{kind}-{max(SIZES)}.csv")
    if not largest.exists():
        code = WRITE.format(WRITERS[kind], WRITERS[kind])
        subprocess.run([sys.executable, "-c", code, str(largest), str(max(SIZES))], check=True)
    out = {}
    for rows in SIZES:
        path = Path(f"data/bench-{kind}-{rows}.csv")
        if not path.exists():
            with open(largest) as src, open(path, "w") as dst:
                dst.writelines(line for _, line in zip(range(rows + 1), src))
        out[rows] = path
    return out


def inspect_run(path: Path) -> dict:
    cmd = [sys.executable, "-m", "leanfit.cli", "inspect", str(path), "--target", "label"]
    cmd += ["--memory-limit", "1GB", "--out", "bench/out/inspect-memory.json", "--force", "-q"]
    return measured(cmd)


def main() -> None:
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    print(
        f"{'file':<12}{'rows':>12}{'MiB':>6}{'growth':>8}{'/parse MiB':>11}"
        f"{'wall s':>8}{'/parse':>7}{'cpu s':>7}{'/parse':>7}"
    )
    for kind in ("make-data", "many-levels"):
        first = None
        for rows, path in files(kind).items():
            ours = inspect_run(path)
            bare = measured([sys.executable, "-c", BARE, str(path)])
            first = first or ours["peak"]
            print(
                f"{kind:<12}{rows:>12,}{ours['peak'] / 2**20:>6.0f}"
                f"{ours['peak'] / first - 1:>+8.0%}{ours['peak'] / bare['peak']:>11.2f}"
                f"{ours['seconds']:>8.1f}{ours['seconds'] / bare['seconds']:>7.2f}"
                f"{ours['cpu']:>7.1f}{ours['cpu'] / bare['cpu']:>7.2f}"
            )


if __name__ == "__main__":
    main()
