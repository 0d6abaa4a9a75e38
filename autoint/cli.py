"""Command line: python -m autoint {download,describe,infer-spec,synth,train,evaluate,explain,correlations,interactions,
compare,report,recommend}."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .datasets.registry import DEFAULT_DATASET, recorded_dataset
from .errors import UsageError


def _metrics_json(metrics: dict) -> str:
    from .training.runs import _json_safe
    return json.dumps(_json_safe(metrics))


def _hidden(text: str) -> tuple[int, ...]:
    if text.strip() in ("", "0", "none"):
        return ()
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dnn {text!r}: give comma-separated widths such as 400,400")


def cmd_download(args) -> int:
    from .datasets import resolve_data_dir
    from .datasets.download import download_ml1m
    target = resolve_data_dir(data_dir=args.data_dir)
    bar = tqdm(unit="B", unit_scale=True, desc="ml-1m.zip")

    def progress(received, total):
        bar.total = total
        bar.n = received
        bar.refresh()

    path = download_ml1m(target, timeout=args.timeout, progress=progress)
    bar.close()
    print(json.dumps({"data_dir": str(path)}))
    return 0


def _load_any_dataset(args, schema=None):
    """--dataset NAME (default DEFAULT_DATASET) or --spec FILE, read from --data-dir (autoint.datasets)."""
    from .datasets import load_dataset
    return load_dataset(args.dataset, spec=args.spec, data_dir=args.data_dir, with_ids=args.with_ids, schema=schema)


def cmd_describe(args) -> int:
    """The data set's summary and its checks (autoint.datasets.checks: warnings, also printed to stderr)."""
    from .datasets import BUILTIN_SPECS, builtin_spec, read_spec
    from .datasets.checks import check_data
    dataset = _load_any_dataset(args)
    spec = read_spec(args.spec) if args.spec else builtin_spec(args.dataset) if args.dataset in BUILTIN_SPECS else None
    checks = check_data(dataset, spec=spec)
    for check in checks:
        print(f"{check.level}: {check.message}", file=sys.stderr)
    print(json.dumps({**dataset.describe(), "checks": [c.to_json() for c in checks]}))
    return 0


def cmd_infer_spec(args) -> int:
    """Guess a spec for a CSV, TSV or Parquet file (autoint.datasets.infer): print it, or write it to --out."""
    from .datasets.infer import infer_spec, refuse_existing, write_spec
    out = refuse_existing(args.out, args.force) if args.out else None  # before the data file is read
    inferred = infer_spec(args.file, label=args.label, sample_rows=args.sample_rows)
    text = inferred.to_toml(spec_dir=out.parent if out is not None else None)
    if out is None:
        sys.stdout.write(text)
        return 0
    write_spec(text, out, force=args.force)
    print(f"spec written to {out}: {len(inferred.fields)} field(s), {len(inferred.left_out)} column(s) left out. "
          f"Next: python -m autoint describe --spec {out}", file=sys.stderr)
    print(json.dumps({"spec": str(out), "fields": [c.name for c in inferred.fields],
                      "left_out": [c.column for c in inferred.left_out]}))
    return 0


def cmd_synth(args) -> int:
    from .datasets.synth import generate_movielens
    path = generate_movielens(args.out, users=args.users, movies=args.movies, ratings=args.ratings, seed=args.seed)
    print(json.dumps({"data_dir": str(path)}))
    return 0


# `train`'s setting flags and the config fields they set. Unset flags are None: the --preset's value (the
# paper's, by default) for the model, the dataclass default for training. --device is not a setting of the run.
MODEL_FLAGS = {"embed_dim": "embed_dim", "attn_dim": "attn_dim", "heads": "heads", "layers": "layers",
               "residual": "residual", "dropout": "dropout", "scaled": "scaled_attention",
               "layer_norm": "layer_norm", "qkv_relu": "qkv_relu", "projection_bias": "projection_bias",
               "attention_dropout": "attention_dropout", "sparse_attention": "sparse_attention",
               "attention_alignment": "attention_alignment", "dnn": "dnn_hidden",
               "dnn_dropout": "dnn_dropout"}
TRAIN_FLAGS = ("epochs", "patience", "batch_size", "lr", "weight_decay", "lr_decay", "seed", "data_path",
               "buffer_rows", "virtual_shards", "loader_workers")
FLAG_NAMES = {"data_path": "--stream/--in-memory"}  # a setting whose flags are not spelled after its field


def cmd_prepare(args) -> int:
    """Preprocess a spec data set once into encoded Parquet row groups (autoint.datasets.prepared); print its summary."""
    from .datasets import BUILTIN_SPECS, CATALOGUED, builtin_spec, has_catalogue, read_spec, resolve_data_dir
    from .errors import UsageError
    from .datasets.prepared import ROW_GROUP_ROWS, keep_freed_memory, prepare
    if has_catalogue(args.dataset or DEFAULT_DATASET, args.spec):
        title = CATALOGUED[args.dataset or DEFAULT_DATASET]
        raise UsageError(f"prepare needs --dataset {', '.join(BUILTIN_SPECS)}, or --spec FILE; {title} is small "
                         "enough to read whole.")
    spec = read_spec(args.spec) if args.spec is not None else builtin_spec(args.dataset)
    folder = resolve_data_dir(args.dataset or spec.name, args.spec, args.data_dir)
    rows = ROW_GROUP_ROWS if args.row_group_rows is None else args.row_group_rows
    if args.whole_process:  # the command line's own process does nothing else: malloc and gc tuned for it
        keep_freed_memory()
    prepared = prepare(spec, folder, args.out, row_group_rows=rows)
    print(json.dumps(prepared.summary()))
    return 0


def model_config_from(args):
    """`train`'s model: --model, the --preset's settings (default "paper", the paper's model), then each flag."""
    from .model.reference_models import FMConfig, LRConfig
    from .errors import ConfigError
    from .model.presets import preset_config
    given = {field: getattr(args, flag) for flag, field in MODEL_FLAGS.items() if getattr(args, flag) is not None}
    kind = getattr(args, "model", "autoint")
    if kind == "lr":
        if given:
            raise ConfigError(f"--model lr has no settings; leave out --{'/--'.join(k.replace('_', '-') for k in given)}.")
        return LRConfig()
    if kind == "fm":
        extra = set(given) - {"embed_dim"}
        if extra:
            raise ConfigError(f"--model fm takes only --embed-dim; leave out {sorted(extra)}.")
        return FMConfig(**given)
    return preset_config(args.preset, **given)


def train_config_from(args):
    from .training.train import TrainConfig
    return TrainConfig(device=args.device, **{k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None})


def settings_from(args):
    """(model config, training config) from --config FILE, else from --model/--preset and the flags."""
    from .errors import ConfigError
    from .training.train import settings_from_json
    if not args.config:
        return model_config_from(args), train_config_from(args)
    flags = [FLAG_NAMES.get(name, f"--{name.replace('_', '-')}") for name in [*MODEL_FLAGS, *TRAIN_FLAGS]
             if getattr(args, name) is not None]
    if flags or args.preset != "paper" or args.model != "autoint":
        flags += ["--preset"] * (args.preset != "paper") + ["--model"] * (args.model != "autoint")
        raise ConfigError(f"--config {args.config} holds every setting of the run; leave out {', '.join(flags)} "
                          f"or edit the file.")
    try:
        obj = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {args.config}: cannot be read as JSON ({exc}).") from exc
    model_config, train_config = settings_from_json(obj, where=args.config)
    if args.device is not None:  # where to train is not a setting of the run
        train_config.device = args.device
        train_config.validate()
    return model_config, train_config


def _training_data(args):
    """--prepared DIR (autoint.datasets.prepared.Prepared: in memory or streamed), else the data set read whole."""
    if not args.prepared:
        return _load_any_dataset(args)
    given = [flag for flag, value in (("--dataset", args.dataset), ("--spec", args.spec),
                                      ("--data-dir", args.data_dir), ("--with-ids", args.with_ids)) if value]
    if given:
        raise UsageError(f"--prepared {args.prepared} is a data set already read and encoded; leave out "
                         f"{', '.join(given)} (they choose raw files; `python -m autoint prepare` takes them).")
    from .datasets.prepared import Prepared
    return Prepared.open(args.prepared)


def cmd_train(args) -> int:
    """Train and save a run. Under torchrun (WORLD_SIZE, RANK, LOCAL_RANK set) every process runs this: they
    train one DistributedDataParallel model (autoint.training.distributed) and rank 0 alone writes the run folder."""
    from .training import distributed
    model_config, train_config = settings_from(args)  # refuse bad settings before reading any data
    if args.snapshot_out and (args.snapshot_epoch is None or args.snapshot_epoch < 1):
        raise UsageError("--snapshot-out needs --snapshot-epoch N (N >= 1): after which epoch to save it.")
    launch = distributed.launch_from_env()
    if launch is None:
        return _train_and_save(args, model_config, train_config, rank=0)
    if args.activity_file:
        raise UsageError("--activity-file paces one process's threads for the app; leave it out under torchrun.")
    distributed.start(launch, train_config.device)
    try:
        return _train_and_save(args, model_config, train_config, rank=launch.rank)
    except RuntimeError as exc:  # a collective failed: another process of the job went away
        failure = distributed.peer_failure(exc)
        if failure is None:
            raise
        raise failure from exc
    finally:
        distributed.stop()


def _train_and_save(args, model_config, train_config, rank: int) -> int:
    from dataclasses import asdict
    from .training.runs import STALE_STAGING_S, clean_staging, save_run
    from .training.train import TrainingDiverged, train
    if rank == 0:
        clean_staging(Path(args.out).parent, older_than_s=STALE_STAGING_S)  # what a killed save left, if any
    dataset = _training_data(args)
    prepared = args.prepared is not None
    progress_file = open(args.progress_jsonl, "a", buffering=1, encoding="utf-8") \
        if args.progress_jsonl and rank == 0 else None

    def report(event):  # one JSON object a line, for a parent process (the app) to follow
        if progress_file is not None:
            progress_file.write(_metrics_json(event) + "\n")

    pacer = None
    if args.activity_file:  # every core while nobody explores, this process's share otherwise
        import torch
        from .training.jobs import ThreadPacer
        pacer = ThreadPacer(args.activity_file, busy=torch.get_num_threads(), idle=args.idle_threads or os.cpu_count())
        pacer.check()
        report({"event": "threads", "threads": torch.get_num_threads(), "time": time.time(), "epoch": 1, "step": 0})

    def callback(event):
        report(event)
        if pacer is not None and event["event"] == "step":
            switched = pacer.check()
            if switched is not None:
                report({**switched, "epoch": event["epoch"], "step": event["step"]})

    if prepared:  # the data set and spec it was prepared from, and where (for the record)
        source = {"dataset": dataset.manifest.get("dataset"), "spec": dataset.manifest.get("spec"),
                  "prepared": str(dataset.path)}
        data_dir = dataset.manifest.get("data_dir") or str(dataset.path)
    else:
        source = {k: dataset.source[k] for k in ("dataset", "spec")} if dataset.source else {}
        data_dir = str(dataset.data_dir)

    def save(out, result):
        if rank != 0:  # one run folder per job: rank 0 writes it
            return
        save_run(out, result.model, metrics=result.metrics, train_config=asdict(result.train_config or train_config),
                 history=result.history, data_fingerprint=dataset.fingerprint,
                 data_dir=data_dir,
                 extra={**({"snapshot_of": str(args.out)} if out == args.snapshot_out else {}),
                        # which data set a spec-read run saw (for the record: never used to choose files)
                        **source} or None)
        if out == args.snapshot_out:
            report({"event": "snapshot", "run": str(out), "epoch": result.metrics["epochs_run"],
                    **{k: result.metrics[k] for k in ("test_auc", "val_auc", "best_epoch")}})

    snapshot = (args.snapshot_epoch, lambda result: save(args.snapshot_out, result)) if args.snapshot_out else None
    diverged = None
    try:
        result = train(dataset, model_config, train_config, callback=callback if progress_file or pacer else None,
                       progress=not args.quiet and rank == 0, **({"snapshot": snapshot} if snapshot else {}))
    except TrainingDiverged as exc:
        if exc.result is None:
            raise  # no finished epoch to keep: a run already at --out stays as it was
        diverged, result = exc, exc.result
    if args.snapshot_out and len(result.history) < args.snapshot_epoch:  # training ended before that epoch
        save(args.snapshot_out, result)
    save(args.out, result)
    if diverged is not None:  # exit non-zero: the run stopped early, with its best weights saved
        raise TrainingDiverged(f"{diverged} Saved them to {args.out} (metrics: stopped=diverged).")
    if rank == 0:
        print(f"run saved to {args.out}", file=sys.stderr)
        print(_metrics_json({**result.metrics, "run": str(args.out)}))
    return 0


def cmd_evaluate(args) -> int:
    from .training.train import evaluate
    run, _, dataset = _run_and_data(args, need_dataset=True)
    _check_fingerprint(args, run, dataset, "its test split would differ")
    metrics = dict(run.metrics)
    for split in ("val", "test"):
        x, y = dataset.split(split)
        scores = evaluate(run.model, x, y)
        metrics[f"{split}_auc"], metrics[f"{split}_logloss"] = scores["auc"], scores["logloss"]
    metrics["samples"] = {k: int(len(v)) for k, v in dataset.splits.items()}
    metrics["device"] = str(next(run.model.parameters()).device)
    print(_metrics_json(metrics))
    return 0


def _trained_on(run) -> tuple[str, str | None]:
    from .workspace.sources import trained_on
    return trained_on(run.manifest)


def _run_and_data(args, need_dataset: bool):
    """Load a run and the data set it explains, encoded with the run's own vocabularies: (run, catalogue or None,
    data set or None); a data set without a catalogue is always read (its samples are rows)."""
    from .training.metrics import pick_device
    from .training.runs import load_run
    from .workspace.sources import data_set_for, load_for_run
    run = load_run(args.run, device=pick_device(getattr(args, "device", None) or "cpu"))
    name, spec = data_set_for(args.run, run.manifest, args.dataset, args.spec)
    # The data folder comes from the command line or the environment, never from run.json:
    # a run folder from elsewhere must not choose which files get read.
    catalog, dataset = load_for_run(name, spec, args.data_dir, run.schema, args.run, need_dataset=need_dataset)
    return run, catalog, dataset


def _explainable(args, run) -> None:
    """explain, correlations and interactions read an AutoInt's attention: an LR or FM run is refused, saying so."""
    from .explain.readings import has_attention
    if not has_attention(run.model):
        raise UsageError(f"{args.run} is {run.model.config.name}, which has no attention: there is no reading of it "
                         f"to compute, and {args.command} explains AutoInt and AutoInt+ runs. Its metrics: "
                         f"python -m autoint evaluate {args.run}.")


def _check_fingerprint(args, run, dataset, why: str) -> None:
    from .data.dataset import DataError
    if dataset.fingerprint != run.manifest.get("data_fingerprint") and not args.any_data:
        raise DataError(f"{dataset.data_dir}: data fingerprint {dataset.fingerprint} differs from the one "
                        f"{args.run} was trained on ({run.manifest.get('data_fingerprint')}), so {why}. Point "
                        f"--data-dir at the training data, or pass --any-data.")


def _one_sample(args, run, catalog, dataset) -> tuple[dict, dict]:
    """The sample to explain, (raw values, what the report says about it): --row N of any data set, or
    --user/--movie (and --time) of MovieLens."""
    from .data.encoding import parse_time
    from .data.samples import split_row
    if args.row is not None:
        if args.user is not None or args.movie is not None or args.time:
            raise UsageError("--row N picks a sample of the data set; leave out --user, --movie and --time.")
        _check_fingerprint(args, run, dataset, f"its {args.split} split's row {args.row} would be another sample")
        row = split_row(dataset, args.split, args.row)
        return row.values, {"split": args.split, "row": row.position, "index": row.index, "label": row.label}
    if catalog is None:
        name, _ = _trained_on(run)
        raise UsageError(f"--user and --movie pick a sample from a catalogue of users and items; {args.run} was "
                         f"trained on {name}, which has none: give --row N (the N-th sample of the {args.split} "
                         f"split, from 0) instead.")
    if args.user is None or args.movie is None:
        raise UsageError("--user and --movie go together: give both, or --row N (the N-th sample of "
                         "the split) instead.")
    values = catalog.sample(args.user, args.movie, parse_time(args.time) if args.time else None)
    return values, {"user": args.user, "movie": args.movie, "title": catalog.movie(args.movie)["title"],
                    "rating": (catalog.rating(args.user, args.movie) or [None])[0]}


def _interaction_baseline(args, run, dataset):
    """The interactions' baseline embedding (1, F, d): the training mean, or the `<unknown>` slots."""
    from .explain.interactions import baseline_embedding
    return baseline_embedding(run.model, args.baseline, dataset.split("train")[0] if dataset is not None else None)


def _reading_names(args) -> None:
    """Refuse an unknown --reading before any work, naming the readings."""
    from .explain.readings import check_names
    if getattr(args, "reading", None) is not None:
        check_names([args.reading])


def _model_reading(args, run, dataset) -> str | None:
    """The reading shown first: --reading, else the run's own default (the highest split-level agreement on its
    test split, `sampling.model_readings`, cached), else None (no data to score it on, or no attention)."""
    from .explain.readings import has_attention
    if args.reading is not None or not has_attention(run.model):
        return args.reading
    if dataset is None or "test" not in dataset.splits:
        return None
    from .explain.sampling import model_readings
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="sample", desc="readings of the test split", file=sys.stderr)
        bar.update(done - bar.n)
    try:
        return model_readings(args.run, run.model, dataset, "test", progress=progress).default
    finally:
        if bar is not None:
            bar.close()


def _split_readings(args, run, dataset, split, keep) -> dict:
    """The readings of a split (or a slice) against its interactions: {"readings": ..., "reading": ...}."""
    from .explain.readings import has_attention
    from .explain.sampling import readings_of_interactions
    if not has_attention(run.model):
        return {"readings": None, "reading": None,
                "readings_note": f"{run.model.config.name} has no attention: there is nothing to read."}
    memo = getattr(args, "readings_memo", None)  # `report` on a split reads them once for both of its dicts
    key = (args.split, keep.tobytes())
    if memo is not None and key in memo:
        result = dict(memo[key])
    else:
        result = readings_of_interactions(run.model, dataset, args.split, split, keep=keep).to_json()
        if memo is not None:
            memo[key] = dict(result)
    if args.reading is not None:
        result["reading"] = args.reading
    return result


def _explained(args):
    """explain's work, shared with `report`: (run, the explanation shown (after the edits, for a what-if), the
    dict `explain --json` prints: workspace.report.explanation_json)."""
    from .data.encoding import parse_edit
    from .explain.explanation import ATTRIBUTION_METHODS, explain_sample, what_if
    from .explain.baselines import mean_embedding
    from .workspace.report import explanation_json
    _reading_names(args)
    run, catalog, dataset = _run_and_data(args, need_dataset=not args.no_attributions or args.baseline == "mean"
                                          or args.row is not None)
    _explainable(args, run)
    values, about = _one_sample(args, run, catalog, dataset)
    edits = dict(parse_edit(run.schema, text) for text in args.set)
    for name, value in edits.items():  # a request time outside the data's range: refused, as --time is
        if run.schema[name].format == "timestamp" and catalog is not None:
            catalog.check_time(value)
    if edits:  # a bad edit is refused before anything is computed
        from .data.encoding import check_values
        check_values(run.schema, {**values, **edits})
    kwargs = {"interaction_baseline": _interaction_baseline(args, run, dataset),
              "reading": _model_reading(args, run, dataset)}
    if not args.no_attributions:  # IG's baseline is the training-mean embedding: computed once when both use it
        kwargs.update(attributions=ATTRIBUTION_METHODS,
                      baseline=kwargs["interaction_baseline"] if args.baseline == "mean"
                      else mean_embedding(run.model, dataset.split("train")[0]))
    if edits:
        result = what_if(run.model, values, edits, **kwargs)
        explanation = result.after
    else:
        explanation = result = explain_sample(run.model, values, **kwargs)
    return run, explanation, explanation_json(result, about, args.baseline)


def cmd_explain(args) -> int:
    _, explanation, report = _explained(args)
    if not args.json:
        what = report["title"] if "title" in report else f"{args.split} sample {args.row} (label {report['label']})"
        print(f"{what}  CTR {explanation.ctr:.3f}", file=sys.stderr)
        for combination in explanation.combinations[:5]:
            print(f"  {combination.text}", file=sys.stderr)
        if explanation.agreement is not None:
            print(f"  {explanation.agreement.verdict}", file=sys.stderr)
    print(_metrics_json(report))
    return 0


def _sampling(args) -> dict:
    """--sample-rows/--budget/--seed: a subsample of the split, each row estimated (automatic above 12 fields)."""
    from .explain.interactions import DEFAULT_BUDGET, SAMPLED_ROWS
    rows, budget = getattr(args, "sample_rows", None), getattr(args, "budget", None)
    out = {"rows": rows or SAMPLED_ROWS, "budget": budget or DEFAULT_BUDGET, "seed": getattr(args, "seed", 0)}
    return {**out, "sampled": True} if rows is not None else out


def _split_interactions(args, run, dataset):
    """The split's interactions, cached; a tqdm bar while they are computed."""
    from .explain.interactions import interactions_of_split
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="sample", desc=f"interactions of the {args.split} split", file=sys.stderr)
        bar.update(done - bar.n)
    try:
        return interactions_of_split(args.run, run.model, dataset, args.split, baseline=args.baseline,
                                     progress=progress, **_sampling(args))
    finally:
        if bar is not None:
            bar.close()


def cmd_correlations(args) -> int:
    _reading_names(args)
    run, _, dataset = _run_and_data(args, need_dataset=True)
    _explainable(args, run)
    print(_metrics_json(_correlations_json(args, run, dataset)))
    return 0


def _correlations_json(args, run, dataset) -> dict:
    """What `correlations --json` prints (the split handout draws it too)."""
    from .data.encoding import parse_where
    from .explain.explanation import dataset_correlations, slice_mask
    from .explain.interactions import agreement
    x, y = dataset.split(args.split)
    where, band = parse_where(run.schema, args.where), tuple(args.ctr_band) if args.ctr_band else None
    result = dataset_correlations(run.model, x, y, where=where, label=args.label, ctr_band=band)
    if result.count == 0:
        print(f"warning: no {args.split} samples match {result.description}", file=sys.stderr)
    report = {"split": args.split, **result.to_json()}
    if not args.no_interactions and run.model.config.layers and result.count:
        split = _split_interactions(args, run, dataset)
        keep = slice_mask(run.model, x, y, where=where, label=args.label, ctr_band=band)
        matrix = split.matrix(keep)
        report.update(interactions=matrix.tolist(), interaction_baseline=args.baseline,
                      interaction_method={**split.describe(), "rows": split.count(keep)},
                      agreement=agreement(result.per_head, matrix).to_json())
        report.update(_split_readings(args, run, dataset, split, keep))
        if split.sampled:
            report["interaction_standard_error"] = split.standard_error(keep).tolist()
    return report


def cmd_interactions(args) -> int:
    """Pairwise Shapley interactions (k-SII) of one sample, or mean |interaction| over a split or a slice of it,
    beside the attention's agreement with them."""
    from .explain.explanation import explain_sample
    one_sample = args.user is not None or args.movie is not None or args.row is not None
    if one_sample and (args.where or args.label is not None):
        raise UsageError("--where and --label slice a split; leave them out with --row or --user/--movie (one "
                         "sample).")
    if not one_sample and args.time:
        raise UsageError("--time sets one sample's request time; give --user and --movie with it.")
    if one_sample and args.sample_rows is not None:
        raise UsageError("--sample-rows measures a subsample of a split; leave it out with one sample.")
    _reading_names(args)
    run, catalog, dataset = _run_and_data(args, need_dataset=not one_sample or args.baseline == "mean"
                                          or args.row is not None)
    _explainable(args, run)
    schema = run.model.schema
    if one_sample:
        values, about = _one_sample(args, run, catalog, dataset)
        explanation = explain_sample(run.model, values, interaction_baseline=_interaction_baseline(args, run, dataset),
                                     seed=args.seed, reading=_model_reading(args, run, dataset))
        measured = explanation.interactions
        report = {"mode": "sample", **about, "fields": schema.names,
                  "labels": explanation.labels, "ctr": explanation.ctr, **measured.to_json(explanation.labels),
                  "agreement": explanation.agreement.to_json() if explanation.agreement is not None else None,
                  **(explanation.readings.to_json() if explanation.readings is not None else
                     {"readings": None, "reading": None})}
    else:
        report = _split_interactions_json(args, run, dataset)
    report["baseline"] = args.baseline
    if not args.json:
        for pair in report["pairs"][:5]:
            print(f"  {' × '.join(pair['fields'])}: {pair['strength']:.3f}", file=sys.stderr)
        if report["agreement"]:
            print(f"  {report['agreement']['verdict']}", file=sys.stderr)
    print(_metrics_json(report))
    return 0


def _split_interactions_json(args, run, dataset) -> dict:
    """What `interactions --json` prints for a split or a slice of it (the split handout draws it too)."""
    from .data.encoding import parse_where
    from .explain.explanation import dataset_correlations, slice_mask
    from .explain.interactions import agreement
    x, y = dataset.split(args.split)
    where = parse_where(run.model.schema, args.where)
    split = _split_interactions(args, run, dataset)
    keep = slice_mask(run.model, x, y, where=where, label=args.label)
    matrix = split.matrix(keep)
    attention = dataset_correlations(run.model, x, y, where=where, label=args.label)
    if attention.count == 0:
        print(f"warning: no {args.split} samples match {attention.description}", file=sys.stderr)
    report = {"mode": "split", "split": args.split, "where": attention.description, "count": int(keep.sum()),
              "fields": run.model.schema.names, "matrix": matrix.tolist(),
              "signed_matrix": split.signed_matrix(keep).tolist(),
              "main": split.main_strength(keep).tolist(), "pairs": split.ranked_pairs(keep),
              "agreement": agreement(attention.per_head, matrix).to_json()
              if run.model.config.layers and attention.count else None,
              "efficiency_gap": split.efficiency_gap, **split.describe(), "rows": split.count(keep),
              "units": "logit", "matrix_is": "mean |pairwise interaction| over the samples",
              **_split_readings(args, run, dataset, split, keep)}
    if split.sampled:  # a subsample of the split's rows: each mean's standard error
        report["standard_error"] = split.standard_error(keep).tolist()
        report["matrix_is"] += f" measured ({split.method}), standard_error its standard error"
    report["baseline"] = args.baseline
    return report


def cmd_compare(args) -> int:
    """What two or more runs of one data set combine, on the same samples of a split (explain.compare): each run's
    mean |k-SII| and raw attention per field pair, each pair of runs' difference map and rank agreement, and the
    seed stability of runs that differ only in seed."""
    from .explain.compare import check_comparable, compare, measure_run, measured_sample
    from .training.runs import load_run
    from .workspace.sources import data_set_for, load_for_run
    if len(args.runs) < 2:
        raise UsageError(f"compare needs two or more runs; got {len(args.runs)} ({', '.join(args.runs)}). Name "
                         "another run folder trained on the same data set (python -m autoint runs lists them).")
    runs = [load_run(path) for path in args.runs]
    check_comparable(runs)
    name, spec = data_set_for(args.runs[0], runs[0].manifest, args.dataset, args.spec)
    _, dataset = load_for_run(name, spec, args.data_dir, runs[0].schema, args.runs[0], need_dataset=True)
    folders = [run.name for run in runs]
    labels = folders if len(set(folders)) == len(folders) else list(args.runs)  # folders of one name: their paths
    measured = []
    for run, label in zip(runs, labels):
        bar = None

        def progress(done, total):
            nonlocal bar
            if bar is None or bar.total != total or done < bar.n:  # the interactions, then the readings
                if bar is not None:
                    bar.close()
                bar = tqdm(total=total, unit="sample", desc=f"{label}: {args.split} split", file=sys.stderr)
            bar.update(done - bar.n)
        try:
            measured.append(measure_run(run, dataset, args.split, name=label, progress=progress))
        finally:
            if bar is not None:
                bar.close()
    result = compare(measured, measured_sample(dataset, args.split, len(runs[0].schema.fields)))
    report = {"split": args.split, **result.to_json()}
    if not args.json:
        sample = result.sample
        print(f"{len(runs)} runs on {sample['rows']:,} of {sample['of']:,} {args.split} samples (seed "
              f"{sample['seed']}); ρ: Spearman over {len(result.fields) * (len(result.fields) - 1) // 2} field pairs",
              file=sys.stderr)
        width = max(len(label) for label in labels)
        print(f"  {'A':<{width}}  {'B':<{width}}  interactions ρ  attention ρ  largest change of mean |k-SII| (B − A)",
              file=sys.stderr)
        for pair in result.pairs:
            rhos = [f"{rho:+.2f}" if math.isfinite(rho) else "-" for rho in (pair.interactions_rho, pair.attention_rho)]
            print(f"  {pair.a:<{width}}  {pair.b:<{width}}  {rhos[0]:>14}  {rhos[1]:>11}  "
                  f"{result.change_text(pair) or '-'}", file=sys.stderr)
        for note in (note for run in measured for note in run.notes):
            print(f"  {note} (-)", file=sys.stderr)
        for group in result.stability:
            print(f"  seed stability: {group.text}", file=sys.stderr)
    print(_metrics_json(report))
    return 0


def cmd_report(args) -> int:
    """A handout (workspace.report): one self-contained HTML file of one prediction (what `explain --json` prints,
    drawn) or of a split or a slice of it (`correlations --json` and `interactions --json`), written to --out
    atomically."""
    from .workspace.report import check_out, sample_report, split_report, write_handout
    one_sample = args.user is not None or args.movie is not None or args.row is not None
    if one_sample and (args.where or args.label is not None):
        raise UsageError("--where and --label slice a split; leave them out with --row or --user/--movie (one "
                         "sample).")
    if not one_sample:
        if args.split is None:
            raise UsageError("report needs a sample, --user U --movie M (MovieLens) or --row N, or a split: "
                             "--split test (with --where Field=value to slice it).")
        if args.set or args.time:
            raise UsageError("--set and --time change one sample; give --user and --movie, or --row N, with them.")
    check_out(args.out)  # before any work
    if one_sample:
        args.split = args.split or "test"
        run, _, report = _explained(args)
        text = sample_report(run, report)
    else:
        _reading_names(args)
        run, _, dataset = _run_and_data(args, need_dataset=True)
        _explainable(args, run)
        # The split's interactions once, into the cache, so both dicts below hold them as `correlations --json` and
        # `interactions --json` print them from then on (the cache keeps float32; a first computation is float64).
        _split_interactions(args, run, dataset)
        correlations = _correlations_json(args, run, dataset)
        interactions = _split_interactions_json(args, run, dataset) if correlations["count"] else None
        text = split_report(run, correlations, interactions)
    out = write_handout(text, args.out)
    print(f"handout written to {out}", file=sys.stderr)
    print(json.dumps({"report": str(out), "bytes": len(text.encode("utf-8"))}))
    return 0


def cmd_runs(args) -> int:
    """The runs folder, newest first; `default: true` marks the run the app opens on (workspace.defaults)."""
    from .model.presets import preset_of
    from .training.runs import list_runs
    from .workspace.defaults import ATTENTION_MODELS, default_run
    from .workspace.sources import runs_root, runs_on_default_data
    root = Path(args.runs_dir) if args.runs_dir else runs_root()
    listed = list_runs(root)
    usable = [r for r in listed if r.get("error") is None]
    chosen = default_run(runs_on_default_data([r for r in usable if r.get("model") in ATTENTION_MODELS]))
    out = []
    for r in listed:
        if r.get("error") is not None:
            out.append({"name": r["name"], "path": r["path"], "error": r["error"], "default": False})
            continue
        config = r.get("config") or {}
        out.append({"name": r["name"], "path": r["path"], "model": r.get("model"),
                    "preset": preset_of(config) if r.get("model") in ATTENTION_MODELS else None,
                    "test_auc": r.get("metrics", {}).get("test_auc"), "dataset": recorded_dataset(r.get("dataset")),
                    "created": r.get("created"), "default": chosen is not None and r["path"] == chosen["path"]})
    if not args.json:
        for r in out:
            auc = f"{r['test_auc']:.4f}" if isinstance(r.get("test_auc"), float) else "-"
            mark = "*" if r["default"] else " "
            print(f"{mark} {r['name']:<24} {r.get('model') or 'unreadable':<9} {r.get('preset') or '-':<13} {auc}",
                  file=sys.stderr)
    print(_metrics_json({"runs_dir": str(root), "runs": out}))
    return 0


def cmd_recommend(args) -> int:
    from .data.encoding import parse_time
    from .explain.recommend import recommend
    from .explain.recommend import can_recommend
    run, catalog, _ = _run_and_data(args, need_dataset=False)
    if catalog is None:  # a data set without a catalogue of users and items (`datasets.has_catalogue`)
        name, _ = _trained_on(run)
        raise UsageError(f"recommendations need user-role and item-role fields and a catalogue of users and items; "
                         f"{args.run} was trained on {name}, which has "
                         f"{'no catalogue here' if can_recommend(run.schema) else 'no such fields'}.")
    if not 1 <= args.top <= 10000:
        raise UsageError(f"--top {args.top}: choose from 1 to 10000.")
    timestamp = parse_time(args.time) if args.time else None
    items = recommend(run.model, catalog, args.user, timestamp, top=args.top, exclude_rated=args.unrated)
    print(_metrics_json({"user": args.user, "recommendations": items}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autoint", description="AutoInt on MovieLens-1M, Criteo, "
                                     "Avazu, KDD12 or any CSV by spec: train, evaluate and explain.")
    sub = parser.add_subparsers(dest="command", required=True)

    def baseline_arg(p):
        from .explain import BASELINES
        p.add_argument("--baseline", default=BASELINES[0], choices=BASELINES,
                       help="interactions: an absent field takes its training-mean embedding (default) or its "
                            "<unknown> slot")

    def reading_arg(p):
        p.add_argument("--reading", metavar="NAME", help="the reading of the attention shown first: raw (the "
                                                          "paper's), rollout, value-norm, gradient, "
                                                          "attention-x-gradient or value-zeroing (default: the "
                                                          "run's best by split-level agreement)")

    def data_arg(p):  # a run's data: the data set it was trained on, read again
        dataset_args(p, default="the run's own; a run trained with --spec needs it again")

    def row_args(p, split=True):
        if split:
            p.add_argument("--split", default="test", choices=["train", "val", "test"])
        p.add_argument("--row", type=int, metavar="N", help="explain the N-th sample (from 0) of --split (default: "
                                                            "test), on any data set")
        p.add_argument("--any-data", action="store_true", help="--row: go on even if the data differs from "
                                                               "training (its rows would be other samples)")

    def dataset_args(p, default=DEFAULT_DATASET):
        from .datasets import DATASETS
        which = p.add_mutually_exclusive_group()
        which.add_argument("--dataset", choices=DATASETS, help=f"a built-in data set (default: {default})")
        which.add_argument("--spec", metavar="FILE", help="a TOML data set spec for your own CSV, TSV or Parquet "
                                                          "files (see autoint/datasets/spec.py)")
        p.add_argument("--data-dir", help="the folder of the raw files as distributed (default: MovieLens: "
                                          "$AUTOINT_DATA_DIR, else data/ml-1m; criteo, avazu, kdd12: data/NAME; "
                                          "--spec: the spec's folder)")

    p = sub.add_parser("download", help="fetch and verify the GroupLens ml-1m.zip")
    data_arg(p)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("describe", help="print sample counts, fields, split sizes and the data's checks (class "
                                        "balance, rare values, leaks, duplicates) as JSON")
    dataset_args(p)
    p.add_argument("--with-ids", action="store_true", help="add UserID and MovieID fields")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("infer-spec", help="guess a TOML data set spec for a CSV, TSV or Parquet file, every choice "
                                          "commented with its evidence")
    p.add_argument("file", help="the data file (CSV or TSV, plain or gzipped, or Parquet)")
    p.add_argument("--label", metavar="COLUMN_OR_RULE", help="the label: a 0/1 column, or a rule such as "
                                                               "\"rating > 3\" (default: the one column holding "
                                                               "exactly two numbers)")
    p.add_argument("--out", metavar="FILE", help="write the spec here (default: print it)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--sample-rows", type=int, default=50_000, metavar="N",
                   help="read the first N rows (default 50000)")
    p.set_defaults(func=cmd_infer_spec)

    p = sub.add_parser("synth", help="write a synthetic MovieLens-format folder with planted interactions")
    p.add_argument("--out", required=True)
    from .datasets.registry import SYNTH_DEFAULTS
    for name, value in SYNTH_DEFAULTS.items():
        p.add_argument(f"--{name}", type=int, default=value, help=f"default {value}")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="preprocess a data set once, streaming, into encoded Parquet row groups")
    dataset_args(p, default="none: give --dataset or --spec")
    p.add_argument("--out", metavar="DIR", help="the prepared folder (default: DATA_DIR/prepared/NAME)")
    p.add_argument("--row-group-rows", type=int, metavar="N",
                   help="rows per Parquet row group (default: autoint.datasets.prepared.ROW_GROUP_ROWS)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a model and save a run folder")
    dataset_args(p)
    p.add_argument("--config", metavar="FILE", help="every setting of the run as one JSON object "
                                                    "{\"model\": {...}, \"train\": {...}} (what the app's jobs pass); "
                                                    "no setting flags beside it")
    p.add_argument("--model", default="autoint", choices=["autoint", "lr", "fm"],
                   help="AutoInt (AutoInt+ with --dnn), or the paper's LR or FM baseline (default: autoint)")
    # Model flags default to None: unset, they keep the --preset's value (the paper's, for the default preset).
    p.add_argument("--preset", default="paper", help="named model settings (autoint.model.presets.PRESETS); the flags "
                                                     "below override it. Default: paper")
    p.add_argument("--layers", type=int, help="interacting layers (paper: 3)")
    p.add_argument("--heads", type=int, help="attention heads (paper: 2)")
    p.add_argument("--embed-dim", type=int, help="embedding size d (paper: 16)")
    p.add_argument("--attn-dim", type=int, help="attention size d' per head (paper: 32)")
    p.add_argument("--dropout", type=float, help="dropout on each head's Eq. 6 output (paper: 0)")
    p.add_argument("--residual", action=argparse.BooleanOptionalAction, default=None,
                   help="Eq. 8's W_Res e term (paper: on; --no-residual is Table 4's variant)")
    p.add_argument("--scaled", action=argparse.BooleanOptionalAction, default=None,
                   help="scale attention scores by 1/sqrt(d') (authors' code; paper: off)")
    p.add_argument("--layer-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="layer norm of each layer's output (authors' code; paper: off)")
    p.add_argument("--qkv-relu", action=argparse.BooleanOptionalAction, default=None,
                   help="ReLU on the query, key, value and residual projections (authors' code; paper: off)")
    p.add_argument("--projection-bias", action=argparse.BooleanOptionalAction, default=None,
                   help="a bias in those projections (authors' code; paper: off)")
    p.add_argument("--attention-dropout", type=float, metavar="P",
                   help="dropout on the attention weights before Eq. 6, in training only (authors' code; paper: 0)")
    p.add_argument("--sparse-attention", action=argparse.BooleanOptionalAction, default=None,
                   help="sparsemax in place of Eq. 5's softmax (a remedy tried for readable attention; paper: off)")
    p.add_argument("--attention-alignment", type=float, metavar="W",
                   help="weight of the training term pulling the alpha*||value|| reading toward the measured "
                        "interactions (autoint/training/alignment.py; the readable preset: 0.1; paper: 0)")
    p.add_argument("--dnn", type=_hidden, help="hidden widths for AutoInt+, e.g. 400,400 (none: AutoInt)")
    p.add_argument("--dnn-dropout", type=float, help="dropout in AutoInt+'s DNN (default 0)")
    p.add_argument("--with-ids", action="store_true")
    # Training flags default to None: unset, they keep TrainConfig's default (shown in each help).
    from types import SimpleNamespace
    from .training.config import (IN_MEMORY_MAX_BYTES, MAX_BATCH, MIN_BATCH, MIN_STEPS_PER_EPOCH, PAPER_LR,
                                  SMALL_BATCH_LR, defaults as train_defaults)
    defaults = SimpleNamespace(**train_defaults())  # no torch import: `prepare` starts without it
    p.add_argument("--epochs", type=int, help=f"most epochs (default {defaults.epochs})")
    p.add_argument("--patience", type=int, help=f"epochs without a better validation AUC before stopping "
                                                f"(default {defaults.patience})")
    p.add_argument("--batch-size", type=int, help=f"default: {MAX_BATCH} where an epoch still has "
                                                   f"{MIN_STEPS_PER_EPOCH} steps at that size, else the largest power "
                                                   f"of two down to {MIN_BATCH} that gives it as many (smaller "
                                                   f"training splits; autoint/training/config.py)")
    p.add_argument("--lr", type=float, help=f"Adam's learning rate (default: {PAPER_LR:g}, or {SMALL_BATCH_LR:g} where "
                                            f"the batch is {MIN_BATCH} or smaller)")
    p.add_argument("--lr-decay", type=float,
                   help=f"multiply the learning rate by this after each epoch without a better validation AUC "
                        f"(default {defaults.lr_decay})")
    p.add_argument("--weight-decay", type=float, help=f"default {defaults.weight_decay}")
    p.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    p.add_argument("--prepared", metavar="DIR", help="train from a prepared directory (python -m autoint prepare) "
                                                     "instead of --dataset/--spec; under torchrun each process "
                                                     "streams its own shards of it")
    path = p.add_mutually_exclusive_group()
    path.add_argument("--stream", dest="data_path", action="store_const", const="streamed", default=None,
                      help="--prepared: stream the row groups through shuffle buffers (memory bounded by "
                           "--buffer-rows)")
    path.add_argument("--in-memory", dest="data_path", action="store_const", const="in-memory",
                      help=f"--prepared: load the splits whole (default: in memory when the encoded tensors fit "
                           f"in {IN_MEMORY_MAX_BYTES / 2**30:g} GiB and it is one process, else streamed)")
    p.add_argument("--buffer-rows", type=int, help=f"streamed: rows of the shuffle buffers, all shards together "
                                                   f"(default {defaults.buffer_rows})")
    p.add_argument("--virtual-shards", type=int, help=f"streamed: shards the row groups are dealt to; a multiple of "
                                                      f"the torchrun processes (default {defaults.virtual_shards})")
    p.add_argument("--loader-workers", type=int, help=f"streamed: DataLoader processes reading row groups "
                                                      f"(default {defaults.loader_workers})")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--progress-jsonl", help="append each progress event as a JSON line to this file")
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--snapshot-epoch", type=int, metavar="N",
                   help="after epoch N, also save the best weights so far to --snapshot-out, then go on training")
    p.add_argument("--snapshot-out", help="run folder for that quick model (written at the end if training "
                                          "stops before epoch N)")
    p.add_argument("--activity-file", help="a file the app touches while someone explores: while it is older "
                                           "than 10 s, train with up to --idle-threads threads (as many as other "
                                           "processes leave cores free), else with OMP_NUM_THREADS")
    p.add_argument("--idle-threads", type=int, help="threads while nobody explores (default: every core)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="print the metrics JSON of a saved run")
    p.add_argument("run")
    data_arg(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--any-data", action="store_true", help="evaluate even if the data differs from training")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("explain", help="explain one prediction: CTR, attention, combinations, attributions")
    p.add_argument("run")
    data_arg(p)
    row_args(p)
    p.add_argument("--user", type=int, help="MovieLens: the user, with --movie (instead of --row)")
    p.add_argument("--movie", type=int)
    p.add_argument("--time", help="request time, ISO 8601 or Unix seconds (default: the real rating's, else the latest)")
    p.add_argument("--set", action="append", default=[], metavar="Field=value",
                   help="edit a field value (what-if); Genre takes A|B; repeatable")
    p.add_argument("--no-attributions", action="store_true", help="skip Captum attributions")
    baseline_arg(p)
    reading_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON (the default prints a short report too)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("correlations", help="field x field attention averaged over a split (Fig. 7b)")
    p.add_argument("run")
    data_arg(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--where", action="append", default=[], metavar="Field=value", help="keep only these samples")
    p.add_argument("--label", type=int, choices=[0, 1])
    p.add_argument("--ctr-band", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--no-interactions", action="store_true",
                   help="leave out the measured interactions and their agreement with attention")
    baseline_arg(p)
    reading_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_correlations)

    p = sub.add_parser("interactions", help="pairwise Shapley interactions (k-SII) of a sample or a split, "
                                            "and attention's agreement with them")
    p.add_argument("run")
    data_arg(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--where", action="append", default=[], metavar="Field=value", help="keep only these samples")
    p.add_argument("--label", type=int, choices=[0, 1])
    row_args(p, split=False)
    p.add_argument("--user", type=int, help="MovieLens, with --movie: one sample instead of a split")
    p.add_argument("--movie", type=int)
    p.add_argument("--time", help="the sample's request time, ISO 8601 or Unix seconds")
    baseline_arg(p)
    p.add_argument("--sample-rows", type=int, metavar="N", help="a split: measure a seeded subsample of N samples, "
                                                                "each estimated (default above 12 fields: 64)")
    p.add_argument("--budget", type=int, help="coalitions the estimator evaluates a sample (more than 12 fields; "
                                              "default 2000)")
    p.add_argument("--seed", type=int, default=0, help="the sampling estimator's seed (more than 12 fields)")
    reading_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_interactions)

    p = sub.add_parser("compare", help="what two or more runs of one data set combine, on the same samples: "
                                       "difference maps, rank agreement, seed stability")
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders trained on the same data set")
    data_arg(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--json", action="store_true", help="print JSON (the default prints a short table too)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="a handout: one self-contained HTML file of one prediction (as explain) or "
                                      "of a split (as correlations and interactions), opened offline")
    p.add_argument("run")
    data_arg(p)
    p.add_argument("--split", choices=["train", "val", "test"],
                   help="without a sample: this split's handout; with --row: the row's split (default test)")
    p.add_argument("--row", type=int, metavar="N", help="the N-th sample (from 0) of --split, on any data set")
    p.add_argument("--any-data", action="store_true", help="--row: go on even if the data differs from training")
    p.add_argument("--user", type=int, help="MovieLens: the user, with --movie (instead of --row)")
    p.add_argument("--movie", type=int)
    p.add_argument("--time", help="request time, ISO 8601 or Unix seconds (default: the rating's, else the latest)")
    p.add_argument("--set", action="append", default=[], metavar="Field=value",
                   help="edit a field value (what-if: before and after); Genre takes A|B; repeatable")
    p.add_argument("--where", action="append", default=[], metavar="Field=value",
                   help="a split: keep only these samples")
    p.add_argument("--label", type=int, choices=[0, 1], help="a split: keep only these labels")
    p.add_argument("--no-attributions", action="store_true", help="a sample: skip Captum attributions")
    baseline_arg(p)
    reading_arg(p)
    p.add_argument("--out", required=True, metavar="FILE.html", help="the handout to write (replaced whole)")
    p.set_defaults(func=cmd_report, ctr_band=None, no_interactions=False, sample_rows=None, budget=None, seed=0,
                   readings_memo={})

    p = sub.add_parser("runs", help="list the runs folder: name, model, preset, test AUC, the app's default")
    p.add_argument("--runs-dir", metavar="DIR", help="the runs folder (default: $AUTOINT_RUNS_DIR, else runs)")
    p.add_argument("--json", action="store_true", help="print JSON (the default prints a table too)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("recommend", help="the top-N movies for a user, each with its CTR and why")
    p.add_argument("run")
    data_arg(p)
    p.add_argument("--user", type=int, required=True)
    p.add_argument("--time", help="request time, ISO 8601 or Unix seconds (default: the latest in the data)")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--unrated", action="store_true", help="leave out movies the user rated")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recommend)
    return parser


def main(argv=None) -> int:
    from .errors import AutoIntError, TrainingCancelled
    args = build_parser().parse_args(argv)
    args.whole_process = argv is None  # main() of `python -m autoint`, not a call from other code (tests)
    try:
        return args.func(args)
    except (AutoIntError, TrainingCancelled) as exc:  # anything else is a bug: its traceback is printed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
