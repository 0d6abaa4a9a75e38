"""`prepare` against a polars streaming pipeline doing the same job, on the same generated Criteo-format file, in
one run: rows/s and peak RSS of each (issue "One house", item 6).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_prepare_polars.py --rows 1000000 10000000 --rounds 3 \
        [--work /tmp/bench-prepare-polars] [--variants unpivot/enum ...] [--results DIR] [--no-check]

The file is `bench_prepare.criteo_file`'s (1M rows: `synth.generate_criteo(rows=1_000_000, seed=0)`; 10M rows:
seeds 0-9 appended). Each tool runs in its own child process, one at a time, once a round (`--rounds`, odd
rounds ours first, even rounds ours last): "ours" is `python -m autoint prepare --dataset criteo`
(`bench_prepare.run`), "polars" is this script's `polars-child`, once per variant. Wall seconds are the parent's
clock around the child (start-up included); peak RSS is the child's own `resource.getrusage(RUSAGE_SELF)
.ru_maxrss` (KiB on Linux), printed as it exits; CPU seconds are the child's user + system time (the parent's
RUSAGE_CHILDREN before and after), less moved by other jobs on the machine than wall time. One JSON line per
tool, round and size; results.json and results.md go to `--results` (default benchmarks/results/prepare-polars).
The ratios are polars / ours: each polars run against the "ours" run of its round, and the medians over rounds.

The polars pipeline (`polars_prepare`), the built-in criteo spec read as `prepare` reads it; a variant is
COUNTING/ENCODING:

  source   `pl.scan_csv(file, separator="\\t", has_header=False, schema=..., quote_char=None)`: the label and the
           13 numeric columns as Float64, the 26 categorical columns as String (an empty field is null);
           `with_row_index` numbers the rows 0.. in file order.
  split    the same rule as `prepared.split_codes`, as polars expressions on UInt64 (wrapping + and *, // for
           >>, xor): fold = splitmix64(row + splitmix64(seed)) % folds; fold 0 test, 1 validation, else train.
  pass 1   ONE `pl.collect_all([...], engine="streaming")` of queries on the `.cache()`d scan, so the CSV is
           parsed once (`pass1_csv_scans` reports `pl.explain_all`'s count: without the cache the per-column
           form scanned twice): the categorical value counts of the training rows, count >= the field's
           min_count kept in the query; one select of each numeric field's min and max after the fill (0) and
           the log2 transform, over ALL rows (as `prepare` and `generic.build_schema` take them), with the rows
           and positives per split as plain sums (a `group_by("split")` as a third query made the shared scan's
           cache hold the parsed rows: 4.4 GB at 10M rows). COUNTING is one of:
             unpivot      `select(C1..C26).unpivot().drop_nulls().group_by(field, value).len()`: one group-by;
             per-column   26 `group_by(C).len()` on the training rows (nulls dropped after the query).
           The vocabulary is `generic.vocab_of`'s: <unknown> at 0, then the kept values most frequent first,
           ties by value; a constant range gets max = min + 1 (`generic.schema_from`).
  pass 2   a second scan of the CSV, one lazy frame: label (Float32), line (Int64: row + 1), per field in
           schema order the categorical slot (Int32; unseen and missing values 0) or the scaled number
           ((t(v) - min) / (max - min), Float32), then `raw:NAME` (Float64, filled), sunk with
           `sink_parquet(pl.PartitionBy(out, key=split, include_key=False, max_rows_per_file=64 * 65536),
           compression="lz4", row_group_size=65536)`: the same columns, types, compression, row-group size and
           part size as `prepare` writes. ENCODING is one of:
             enum            `cast(pl.Enum(vocab[1:]), strict=False).to_physical() + 1`, null -> 0;
             replace_strict  `replace_strict(vocab[1:], 1.., default=0)`: in polars 2.1.0 this is not streamed
                             (26 encoded columns alone peaked at 5.7 GB at 10M rows, the Enum cast 0.4 GB).

What it does not do that `prepare` does: no per-line checks with file:line errors (a bad line is polars'
error; a label other than 0/1 passes), no quoted fields, no gzip or Parquet sources, no joins; no manifest,
fingerprints, vocabularies.json checksum or atomic rename; no staging of pass 1's parsed batches (pass 2 parses
the text again); exact counts of every distinct training value (polars' group-by tables hold them all) instead
of the count-min sketch and the candidates; polars writes the floats without dictionary encoding (its files are
about twice prepare's); the output folders are `split=0|1|2/` (train, val, test), not train/val/test.
The check (skipped by `--no-check`) compares each polars output with ours after the timed runs: vocabularies,
numeric ranges, rows and positives per split, and every column of every split, value for value.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MILLION = 1_000_000
ROW_GROUP_ROWS = 65536  # prepared.ROW_GROUP_ROWS
GROUPS_PER_FILE = 64  # prepared.GROUPS_PER_FILE
GOLDEN = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1
SPLITS = ("train", "val", "test")
UNKNOWN = "<unknown>"  # schema.UNKNOWN
RAW = "raw:"


# ----------------------------------------------------------------------------- the polars pipeline (child)

def _splitmix64_int(x: int) -> int:
    """prepared._splitmix64 on one Python int."""
    z = (x + GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _splitmix64_expr(x):
    """prepared._splitmix64 as a polars expression on UInt64 (+ and * wrap; // by 2^k is >> k)."""
    import polars as pl

    def u(v):
        return pl.lit(v, dtype=pl.UInt64)
    z = x + u(GOLDEN)
    z = (z.xor(z // u(1 << 30))) * u(0xBF58476D1CE4E5B9)
    z = (z.xor(z // u(1 << 27))) * u(0x94D049BB133111EB)
    return z.xor(z // u(1 << 31))


def _log2_expr(v):
    """schema.log2_transform: v > 2 becomes floor(ln(v)^2), others stay."""
    import polars as pl
    return pl.when(v > 2).then(v.log().pow(2).floor()).otherwise(v)


def _transformed(f, v):
    if f.transform == "log2":
        return _log2_expr(v)
    if f.transform in (None, "minmax"):
        return v
    raise SystemExit(f"transform {f.transform!r} is not in this benchmark's polars pipeline")


VARIANTS = ("unpivot/enum", "per-column/enum", "unpivot/replace_strict", "per-column/replace_strict")


def polars_prepare(spec, source: Path, out: Path, variant: str = "unpivot/enum") -> dict:
    """`prepare`'s two passes on polars' streaming engine (see the module docstring). Returns the counts, the
    vocabularies and ranges (for the check) and each pass's seconds."""
    import polars as pl
    started = time.perf_counter()
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    counting, encode = variant.split("/")
    if spec.label.op is not None or spec.joins or spec.format == "parquet" or spec.header:
        raise SystemExit("this benchmark's polars pipeline takes a headerless CSV with a 0/1 label column")
    numeric = [f for f in spec.fields if f.kind == "numeric"]
    categorical = [f for f in spec.fields if f.kind == "categorical"]
    if len(numeric) + len(categorical) != len(spec.fields) or any(
            f.missing or f.derive or len(f.columns) != 1 or f.columns[0] != f.name for f in spec.fields):
        raise SystemExit("this benchmark's polars pipeline takes one column per field, numeric or categorical")
    cats = [f.name for f in categorical]
    kinds = {f.name: f.kind for f in spec.fields}
    schema = {c: (pl.String if kinds.get(c) == "categorical" else pl.Float64) for c in spec.columns}
    folds = spec.folds if spec.split == "folds" else 10
    key = _splitmix64_int(spec.seed & MASK)
    fold = _splitmix64_expr(pl.col("row").cast(pl.UInt64) + pl.lit(key, dtype=pl.UInt64)) % pl.lit(folds, pl.UInt64)
    split = pl.when(fold == 0).then(pl.lit(2, pl.Int8)).when(fold == 1).then(pl.lit(1, pl.Int8)) \
        .otherwise(pl.lit(0, pl.Int8)).alias("split")

    def scan():
        return pl.scan_csv(source, separator=spec.separator, has_header=False, schema=schema, quote_char=None) \
            .with_row_index("row").with_columns(split)

    def filled(f):
        return pl.col(f.name).fill_null(f.fill)

    # Pass 1: one streaming query (one CSV scan, shared by the queries: `pass1_csv_scans` counts them).
    base = scan().cache()
    train = base.filter(pl.col("split") == 0)
    mins = {f.name: f.min_count for f in categorical}
    if counting == "unpivot":
        threshold = pl.lit(next(iter(mins.values()))) if len(set(mins.values())) == 1 else \
            pl.col("field").replace_strict(mins, return_dtype=pl.Int64)
        counts = [train.select(cats).unpivot(on=cats, variable_name="field", value_name="value")
                  .drop_nulls("value").group_by("field", "value").len().filter(pl.col("len") >= threshold)]
    else:  # per-column; a null filter before the group-by would be pushed down and split the scan
        cached = train.select(cats)
        counts = [cached.group_by(c).len().filter(pl.col("len") >= mins[c]) for c in cats]
    # rows and positives per split as plain aggregations beside the ranges: a `group_by("split")` as a third
    # query made the shared scan's cache hold the parsed rows (4.4 GB at 10M rows, counts alone 1.4 GB)
    label = pl.col(spec.label.column)
    ranges_q = base.select([_transformed(f, filled(f)).min().alias(f"{f.name}:min") for f in numeric]
                           + [_transformed(f, filled(f)).max().alias(f"{f.name}:max") for f in numeric]
                           + [(pl.col("split") == k).sum().alias(f"{s}:rows") for k, s in enumerate(SPLITS)]
                           + [label.filter(pl.col("split") == k).sum().alias(f"{s}:pos") for k, s in enumerate(SPLITS)])
    queries = counts + [ranges_q]
    scans = pl.explain_all(queries).count("Csv SCAN")
    results = pl.collect_all(queries, engine="streaming")
    ranges_df = results[-1]
    vocabs = {}
    if counting == "unpivot":
        by_field = results[0].partition_by("field", as_dict=True, include_key=False)
        frames = {c: by_field.get((c,)) for c in cats}
    else:
        frames = {c: df.rename({c: "value"}) for c, df in zip(cats, results[:-1])}
    for c in cats:
        df = frames[c]
        if df is None:
            vocabs[c] = [UNKNOWN]
            continue
        df = df.filter(pl.col("value").is_not_null() & (pl.col("value") != UNKNOWN)) \
            .sort(["len", "value"], descending=[True, False])
        vocabs[c] = [UNKNOWN] + df["value"].to_list()
    ranges = {}
    for f in numeric:
        low, high = ranges_df[f"{f.name}:min"][0], ranges_df[f"{f.name}:max"][0]
        if low is None:
            low, high = 0.0, 1.0
        if high <= low:
            high = low + 1.0
        ranges[f.name] = (float(low), float(high))
    per_split = {s: (int(ranges_df[f"{s}:rows"][0]), int(ranges_df[f"{s}:pos"][0] or 0)) for s in SPLITS}
    pass1 = time.perf_counter() - started

    # Pass 2: parse again, encode, sink the three splits' row groups.
    columns = [pl.col(spec.label.column).cast(pl.Float32).alias("label"),
               (pl.col("row").cast(pl.Int64) + 1).alias("line")]
    for f in spec.fields:
        if f.kind == "numeric":
            low, high = ranges[f.name]
            columns.append(((_transformed(f, filled(f)) - low) / (high - low)).cast(pl.Float32).alias(f.name))
        else:
            vocab = vocabs[f.name]
            if encode == "enum":  # the Enum's physical code is the position in vocab[1:]; not in it: null -> 0
                slot = pl.col(f.name).cast(pl.Enum(vocab[1:]), strict=False).to_physical().cast(pl.Int32) + 1
                columns.append(slot.fill_null(0).alias(f.name))
            else:
                columns.append(pl.col(f.name).replace_strict(
                    pl.Series(vocab[1:], dtype=pl.String), pl.Series(range(1, len(vocab)), dtype=pl.Int32),
                    default=pl.lit(0, pl.Int32), return_dtype=pl.Int32).alias(f.name))
    columns += [filled(f).cast(pl.Float64).alias(RAW + f.name) for f in numeric]
    columns.append(pl.col("split"))
    t2 = time.perf_counter()
    scan().select(columns).sink_parquet(
        pl.PartitionBy(out, key="split", include_key=False, max_rows_per_file=GROUPS_PER_FILE * ROW_GROUP_ROWS),
        compression="lz4", row_group_size=ROW_GROUP_ROWS, mkdir=True, engine="streaming")
    pass2 = time.perf_counter() - t2
    rows = sum(n for n, _ in per_split.values())
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 3), "pass1_s": round(pass1, 3),
            "pass2_s": round(pass2, 3), "pass1_csv_scans": scans,
            "splits": {s: {"rows": per_split.get(s, (0, 0))[0], "positives": per_split.get(s, (0, 0))[1]}
                       for s in SPLITS},
            "vocab_sizes": {c: len(v) for c, v in vocabs.items()}, "vocabs": vocabs, "ranges": ranges}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_prepare_polars.py polars-child")
    parser.add_argument("--file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", default=VARIANTS[0], choices=VARIANTS)
    args = parser.parse_args(argv)
    import resource
    from autoint.datasets import builtin_spec  # the spec `prepare --dataset criteo` reads
    result = polars_prepare(builtin_spec("criteo"), Path(args.file), Path(args.out), args.variant)
    Path(args.out, "polars-result.json").write_text(json.dumps(result))
    result.pop("vocabs")
    result["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- the parent

def run_polars(folder: Path, out: Path, variant: str) -> dict:
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "polars-child", "--file",
                           str(folder / "train.txt"), "--out", str(out), "--variant", variant],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"rows": child["rows"], "wall_s": round(wall, 1), "rows_per_s": round(child["rows"] / wall),
            "prepare_s": child["seconds"], "pass1_s": child["pass1_s"], "pass2_s": child["pass2_s"],
            "pass1_csv_scans": child["pass1_csv_scans"], "peak_rss_mib": round(child["peak_rss_kib"] / 1024),
            "file_mib": round((folder / "train.txt").stat().st_size / 2**20),
            "out_mib": round(sum(p.stat().st_size for p in out.rglob("*.parquet")) / 2**20)}


def check(ours: Path, theirs: Path) -> dict:
    """The two outputs compared: vocabularies, ranges, split rows/positives, every column of every split."""
    import polars as pl
    import pyarrow.parquet as pq
    from autoint.datasets.prepared import Prepared
    prepared = Prepared.open(ours)
    result = json.loads((theirs / "polars-result.json").read_text())
    differences = []
    for f in prepared.schema.fields:
        if f.kind == "numeric":
            if tuple(result["ranges"][f.name]) != (f.min_value, f.max_value):
                differences.append(f"{f.name} range {result['ranges'][f.name]} != {(f.min_value, f.max_value)}")
        elif list(f.vocab) != result["vocabs"][f.name]:
            differences.append(f"{f.name} vocabulary ({len(result['vocabs'][f.name])} against {len(f.vocab)})")
    row_groups, unordered = {}, []
    for k, s in enumerate(SPLITS):
        want = (prepared.rows(s), prepared.positives(s))
        got = (result["splits"][s]["rows"], result["splits"][s]["positives"])
        if got != want:
            differences.append(f"{s}: rows, positives {got} != {want}")
        ours_files = [g.file for g in prepared.row_groups(s)]
        ours_files = sorted(set(ours_files), key=ours_files.index)
        their_files = sorted((theirs / f"split={k}").glob("*.parquet"))
        sizes = [pq.ParquetFile(p).metadata.row_group(i).num_rows for p in their_files
                 for i in range(pq.ParquetFile(p).metadata.num_row_groups)]
        row_groups[s] = {"files": len(their_files), "row_groups": len(sizes),
                         "all_full_but_last": all(n == ROW_GROUP_ROWS for n in sizes[:-1])}
        a = pl.scan_parquet(ours_files)
        b = pl.scan_parquet(their_files)
        if a.collect_schema() != b.collect_schema():
            differences.append(f"{s}: schemas differ: {a.collect_schema()} / {b.collect_schema()}")
            continue
        b_lines = b.select("line").collect()["line"]
        if not b_lines.is_sorted():
            unordered.append(s)
        b_sorted = b.sort("line") if not b_lines.is_sorted() else b
        for c in a.collect_schema().names():
            x, y = a.select(c).collect()[c], b_sorted.select(c).collect()[c]
            if not x.equals(y):
                n = int((x != y).sum()) if len(x) == len(y) else None
                differences.append(f"{s}: column {c} differs ({n} values)" if n is not None else
                                   f"{s}: column {c} has {len(y)} rows, not {len(x)}")
    return {"equal": not differences, "differences": differences[:20], "polars_row_groups": row_groups,
            "polars_rows_out_of_line_order": unordered}


def ratios(theirs: dict, ours: dict) -> dict:
    """polars / ours: rows/s (wall), peak RSS, CPU seconds; and the 1.3x rule on the first two."""
    speed, rss = theirs["rows_per_s"] / ours["rows_per_s"], theirs["peak_rss_mib"] / ours["peak_rss_mib"]
    return {"rows_per_s": round(speed, 3), "peak_rss": round(rss, 3),
            "cpu_s": round(theirs["cpu_s"] / ours["cpu_s"], 3),
            "within_1.3x_both": speed >= 1 / 1.3 and rss <= 1.3}


def sh(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True).stdout.strip()


def write_results(results: Path, record: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = ["# `prepare` against a polars streaming pipeline", "",
             f"Written by `benchmarks/bench_prepare_polars.py` ({record['command']}).", "",
             f"- date: {record['date']} (UTC)", f"- commit: {record['commit']}",
             f"- CPU: {record['cpu']}, {record['threads']} threads; flags: {record['cpu_flags']}",
             f"- polars {record['polars']}, pyarrow {record['pyarrow']}, Python {record['python']}", ""]
    for size in record["sizes"]:
        lines += [f"## {size['rows']:,} rows ({size['file_mib']:,} MiB file)", "",
                  f"- load before: `{size['load_before']}`", f"- load after: `{size['load_after']}`", "",
                  "| tool | round | wall s | rows/s (wall) | CPU s | inner s | pass 1 s | pass 2 s | peak RSS MiB "
                  "| output MiB | load after |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in size["runs"]:
            lines.append(f"| {r['tool']} | {r['round']} | {r['wall_s']} | {r['rows_per_s']:,} | {r['cpu_s']} | "
                         f"{r['prepare_s']} | {r.get('pass1_s', '')} | {r.get('pass2_s', '')} | "
                         f"{r['peak_rss_mib']:,} | {r['out_mib']} | {r['load_after']} |")
        lines += ["", "| polars variant, round | rows/s polars / ours | peak RSS polars / ours | CPU s polars / ours "
                  "| within 1.3x on both |", "|---|---:|---:|---:|---|"]
        for v, ratio in size["ratios"].items():
            lines.append(f"| {v} | {ratio['rows_per_s']} | {ratio['peak_rss']} | {ratio['cpu_s']} | "
                         f"{ratio['within_1.3x_both']} |")
        for v, c in size.get("check", {}).items():
            lines += ["", f"Outputs compared after the timed runs, ours against polars ({v}): equal = {c['equal']}"
                      + (f"; differences: {'; '.join(c['differences'])}" if c["differences"] else "")
                      + f"; polars' part files and row groups: {c['polars_row_groups']}"
                      + (f"; polars rows not in line order in {c['polars_rows_out_of_line_order']}"
                         if c["polars_rows_out_of_line_order"] else "") + "."]
        lines.append("")
    lines += ["CPU s: the child's user + system seconds (getrusage of the children), less moved by other jobs "
              "than wall time. 'load after': /proc/loadavg as the run ended. Odd rounds run ours first, even rounds "
              "last.", "",
              "Ratios: rows/s polars / ours (above 1: polars faster; 'within 1.3x' means >= 1/1.3 = 0.77) and peak "
              "RSS polars / ours (below 1: polars smaller; 'within 1.3x' means <= 1.3).", ""]
    (results / "results.md").write_text("\n".join(lines))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "polars-child":
        return child_main(sys.argv[2:])
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[MILLION, 10 * MILLION])
    parser.add_argument("--work", default="/tmp/bench-prepare-polars")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS[:3]), choices=VARIANTS,
                        help="polars pipelines, COUNTING/ENCODING (see the module docstring)")
    parser.add_argument("--results", default=str(Path(__file__).resolve().parent / "results" / "prepare-polars"))
    parser.add_argument("--rounds", type=int, default=3,
                        help="times every tool runs (odd rounds ours first, even rounds ours last); medians too")
    parser.add_argument("--no-check", action="store_true", help="skip comparing the two outputs")
    parser.add_argument("--no-results", action="store_true", help="print the JSON lines only")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_prepare
    import polars as pl
    import pyarrow
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[1]
    record = {"command": "PYTHONPATH=. .venv/bin/python benchmarks/bench_prepare_polars.py " + " ".join(sys.argv[1:]),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
              "commit": sh(f"git -C {root} rev-parse --short HEAD"),
              "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(), "threads": os.cpu_count(),
              "cpu_flags": " ".join(sh("grep -o -w 'avx2\\|avx512f\\|avx512_bf16\\|amx_tile' /proc/cpuinfo "
                                       "| sort -u").split()),
              "polars": pl.__version__, "pyarrow": pyarrow.__version__, "python": platform.python_version(),
              "sizes": []}
    for rows in args.rows:
        folder = bench_prepare.criteo_file(work, rows)
        size = {"rows": rows, "file_mib": round((folder / "train.txt").stat().st_size / 2**20),
                "load_before": sh("uptime"), "runs": []}
        size["ratios"] = {}
        tools = ["ours"] + list(args.variants)
        for k in range(1, args.rounds + 1):  # each round every tool once; odd rounds ours first, even rounds last
            order = tools if k % 2 else tools[1:] + tools[:1]
            done = {}
            for t in order:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                if t == "ours":
                    r = bench_prepare.run(folder, work / f"ours-{rows}", [])
                else:
                    r = run_polars(folder, work / f"polars-{t.replace('/', '-')}-{rows}", t)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                r["cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)
                done[t] = r = {"tool": "ours" if t == "ours" else f"polars {pl.__version__} ({t})", "round": k,
                               "load_after": sh("cut -d' ' -f1-3 /proc/loadavg"), **r}
                size["runs"].append(r)
                print(json.dumps({"threads": os.cpu_count(), **r}), flush=True)
            for t in args.variants:
                size["ratios"][f"{done[t]['tool']}, round {k}"] = ratios(done[t], done["ours"])
        for t in args.variants:  # the medians over the rounds, each tool's own
            mine = [r for r in size["runs"] if r["tool"].endswith(f"({t})")]
            ours_runs = [r for r in size["runs"] if r["tool"] == "ours"]
            size["ratios"][f"{mine[0]['tool']}, medians of {args.rounds}"] = ratios(
                {key: statistics.median(r[key] for r in mine) for key in ("rows_per_s", "peak_rss_mib", "cpu_s")},
                {key: statistics.median(r[key] for r in ours_runs) for key in ("rows_per_s", "peak_rss_mib", "cpu_s")})
        size["load_after"] = sh("uptime")
        print(json.dumps({"rows": rows, "ratios": size["ratios"], "load_before": size["load_before"],
                          "load_after": size["load_after"]}), flush=True)
        if not args.no_check:
            size["check"] = {v: check(work / f"ours-{rows}", work / f"polars-{v.replace('/', '-')}-{rows}")
                             for v in args.variants}
            print(json.dumps({"rows": rows, "check": size["check"]}), flush=True)
        record["sizes"].append(size)
    if not args.no_results:
        write_results(Path(args.results), record)


if __name__ == "__main__":
    main()
