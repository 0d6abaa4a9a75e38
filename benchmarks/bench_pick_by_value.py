"""Picking a sample by field values on a prepared copy (Explore's filters; `Prepared.field_slots` reads one
field's column of the test split, never its rows):

    PYTHONPATH=. .venv/bin/python benchmarks/bench_pick_by_value.py /tmp/bench-prepare/prepared-10000000

(bench_prepare.py writes such a copy from generated Criteo-format rows.) Two rounds, the first with cold file
handles: C3's value counts over the test split, the samples with its second most frequent value, C1's counts among
them, the samples with both; then the process's peak RSS.
"""
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoint.datasets.prepared import Prepared  # noqa: E402
from autoint.data.samples import matching, value_counts  # noqa: E402


def main() -> None:
    copy = Prepared.open(sys.argv[1])
    print(f"test rows {copy.rows('test'):,}, row groups {len(copy.row_groups('test'))}")
    for _ in range(2):
        started = time.perf_counter()
        top = value_counts(copy, "test", "C3", limit=200)
        counted = time.perf_counter()
        one = matching(copy, "test", {"C3": top[1][0]})
        matched = time.perf_counter()
        second = value_counts(copy, "test", "C1", one, limit=200)
        counted_again = time.perf_counter()
        both = matching(copy, "test", {"C3": top[1][0], "C1": second[0][0]})
        done = time.perf_counter()
        print(f"value_counts C3 {1e3 * (counted - started):.0f} ms; matching C3 {1e3 * (matched - counted):.0f} ms "
              f"({len(one):,} samples); value_counts C1 among them {1e3 * (counted_again - matched):.0f} ms; "
              f"matching both {1e3 * (done - counted_again):.0f} ms ({len(both):,})")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
