"""Handouts: one self-contained HTML file of a prediction (`sample_report`) or of a split (`split_report`), for a
person who has neither the app nor the model.

What a handout shows comes from the same dicts the command line prints: `explain --json` (`explanation_json`,
which `python -m autoint explain` prints too), and `correlations --json` with `interactions` on a split. Each dict
is written into the file as JSON (`<script type="application/json" id="explanation">`; a split's: ids
"correlations" and "interactions"), and every figure is drawn from it by the functions the app draws with
(autoint.figures), so the pictures, the file's numbers and the command line's agree.

The file opens anywhere, offline: Plotly's JS is inlined once, each figure is a div and a call to it, MathJax is
off, the fonts are the system's, and a Content-Security-Policy forbids every fetch (no CDN, no font, no image from
a URL). Each chart keeps the toolbar's download button (PNG or SVG, chosen at the top of the page). A model card
names the run, its model and settings, the data set and its fingerprint, the test AUC, the seed, when the run was
made and the code version; never a path of the machine that wrote it, nor who ran it.
"""
from __future__ import annotations

import functools
import html
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import UsageError
from ..explain.explanation import METHOD_NAMES, SampleExplanation, WhatIf
from ..explain.interactions import (head_entropy, matrix_to_pairs, near_uniform, pair_index, strength_ranks,
                                    verdict)
from ..explain.readings import NAMES, PAPER_READING, READINGS, pairs_of
from ..training.runs import _json_safe, read_manifest

ATTENTION_AXES = "[layers][heads][query field][attended field]"
LEFT_OUT = "(a path, left out)"
# run.json keys a model card never shows: where files were (paths of the machine that trained it), the schema and
# the per-epoch history (long, and on the app's Train page).
CARD_SKIPS = {"data_dir", "prepared", "spec", "snapshot_of", "path", "run", "schema", "vocabularies", "history",
              "runs_dir", "out", "progress_jsonl", "activity_file", "snapshot_out"}
# Nothing is fetched: scripts and styles are inline, images (a heatmap's raster, an export) are data: or blob: URLs.
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 0;
       color: #1f2328; background: #fff; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; } h2 { font-size: 1.25rem; margin: 32px 0 8px; border-bottom: 1px solid #ddd;
padding-bottom: 4px; } h3 { font-size: 1.05rem; margin: 20px 0 6px; }
.lead { color: #555; margin: 0 0 16px; } .note { color: #555; font-size: 0.92rem; }
.metrics { display: flex; flex-wrap: wrap; gap: 28px; margin: 8px 0 12px; }
.metric .label { color: #555; font-size: 0.85rem; } .metric .value { font-size: 1.7rem; font-weight: 600; }
.verdict { border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.good { background: #e6f4ea; border: 1px solid #a8d5b5; } .weak { background: #fff4e5; border: 1px solid #f0c98a; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f6f8fa; padding: 1px 4px; border-radius: 3px; font-size: 0.88em; }
.figure { margin: 10px 0 4px; } .toolbar { float: right; font-size: 0.85rem; color: #555; }
details { margin: 6px 0; } pre { white-space: pre-wrap; font-size: 0.82rem; background: #f6f8fa; padding: 8px; }
"""
# The export format of every chart's camera button: the toolbar's config, swapped on every plot at once.
FORMAT_SCRIPT = """
document.getElementById('export-format').addEventListener('change', function (event) {
  var format = event.target.value;
  document.querySelectorAll('.js-plotly-plot').forEach(function (plot) {
    var options = Object.assign({}, (plot._context || {}).toImageButtonOptions || {}, {format: format});
    Plotly.react(plot, plot.data, plot.layout, {displaylogo: false, modeBarButtonsToRemove: ['lasso2d', 'select2d'],
                                                toImageButtonOptions: options});
  });
});
"""


# ----------------------------------------------------------------------------- the numbers

def explanation_json(explained: SampleExplanation | WhatIf, about: Mapping, interaction_baseline: str,
                     reading: str | None = None) -> dict:
    """The dict `python -m autoint explain --json` prints: the explanation (after the edits, for a what-if, with
    the what-if's own numbers under "what_if"), what the sample is (`about`: user and movie, or split and row), the
    interactions' baseline and the attention's axes. `reading`: the reading shown first, when the caller picked
    it (the app's picker); by default the explanation's own."""
    if isinstance(explained, WhatIf):
        report = {**explained.after.to_json(), "what_if": explained.to_json()}
    else:
        report = explained.to_json()
    report.update(**about, interaction_baseline=interaction_baseline, attention_axes=ATTENTION_AXES)
    if reading is not None and report.get("readings"):
        if reading not in report["readings"]:
            raise UsageError(f"reading {reading!r} was not computed; computed: {', '.join(report['readings'])}.")
        report["reading"] = reading
    return report


def json_text(report: Mapping) -> str:
    """A report as the command line prints it (non-finite numbers as null)."""
    return json.dumps(_json_safe(report))


# ----------------------------------------------------------------------------- the model card

@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`git <short commit>` of the checkout the package runs from, else `autoint <version>`; never fails."""
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5, stdin=subprocess.DEVNULL)
        commit = done.stdout.strip()
        if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{4,40}", commit):
            return f"git {commit}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return f"autoint {version('autoint')}"
    except Exception:  # not installed: the checkout's pyproject.toml, if any
        pass
    try:
        import tomllib
        with open(root / "pyproject.toml", "rb") as fh:
            return f"autoint {tomllib.load(fh)['project']['version']}"
    except (OSError, KeyError, ValueError, TypeError):
        return "autoint (version unknown)"


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith("~") or bool(re.match(r"^[A-Za-z]:", text))


def scrubbed(value):
    """`value` without paths: CARD_SKIPS keys dropped, any string that looks like a path replaced."""
    if isinstance(value, Mapping):
        return {str(k): scrubbed(v) for k, v in value.items() if k not in CARD_SKIPS}
    if isinstance(value, (list, tuple)):
        return [scrubbed(v) for v in value]
    if isinstance(value, str) and _looks_like_path(value):
        return LEFT_OUT
    return value


def model_card(manifest: Mapping, name: str) -> dict:
    """What a handout says about the run: from its run.json, without a path or a user name."""
    from ..model.presets import preset_of
    from .sources import trained_on
    config, train_config = manifest.get("config") or {}, manifest.get("train_config") or {}
    metrics = manifest.get("metrics") or {}
    try:
        preset = preset_of(config) if manifest.get("model", "AutoInt") not in ("LR", "FM") else None
    except Exception:  # a preset is a nicety of the card: an odd config just has none
        preset = None
    dataset, spec = trained_on(dict(manifest))
    return _json_safe({
        "run": name, "model": manifest.get("model", "AutoInt"), "preset": preset,
        "dataset": dataset if not _looks_like_path(dataset) else LEFT_OUT,
        "dataset_from": "a spec file" if spec else "built in",
        "data_fingerprint": manifest.get("data_fingerprint") or None,
        "test_auc": metrics.get("test_auc"), "test_logloss": metrics.get("test_logloss"),
        "val_auc": metrics.get("val_auc"), "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs_run"), "seed": train_config.get("seed"),
        "created": manifest.get("created"), "code_version": code_version(),
        "settings": {"model": scrubbed(config), "training": scrubbed(train_config)}})


def _manifest_and_name(run) -> tuple[dict, str]:
    """A loaded run (training.runs.Run), or a run folder's path (its run.json alone is read)."""
    if hasattr(run, "manifest") and hasattr(run, "path"):
        return run.manifest, Path(run.path).name
    return read_manifest(run, vocabularies=False), Path(run).name


# ----------------------------------------------------------------------------- the document

def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return _text(value)


def _rho(value) -> float:
    return float("nan") if value is None else float(value)


def _json_block(element_id: str, obj) -> str:
    """A JSON data block: `<` `>` `&` escaped (valid JSON), so no text inside can end the script element."""
    text = json_text(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "figure"


class Document:
    """A handout being written: sections of HTML, the figures among them (counted), the data blocks."""

    def __init__(self, title: str, lead: str):
        self.title, self.lead = title, lead
        self.parts: list[str] = []
        self.data: list[str] = []
        self.figures = 0
        self.templates: dict[str, int] = {}  # a layout template's JSON -> its index in window.autointTemplates

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        anchor = f' id="{_text(anchor)}"' if anchor else ""
        self.add(f"<h{level}{anchor}>{_text(text)}</h{level}>")

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{_text(text)}</p>')

    def paragraph(self, markup: str) -> None:
        self.add(f"<p>{markup}</p>")

    def verdict(self, rho, pairs: int, subject: str) -> None:
        value = _rho(rho)
        kind = "good" if np.isfinite(value) and value >= 0.5 else "weak"
        self.add(f'<div class="verdict {kind}"><strong>Verdict:</strong> {_text(verdict(value, pairs, subject))}.'
                 "</div>")

    def metrics(self, items: Sequence[tuple[str, str, str]]) -> None:
        """(label, value, hover) boxes in a row."""
        self.add('<div class="metrics">' + "".join(
            f'<div class="metric" title="{_text(hover)}"><div class="label">{_text(label)}</div>'
            f'<div class="value">{_text(value)}</div></div>' for label, value, hover in items) + "</div>")

    def table(self, rows: Sequence[Mapping], numeric: Sequence[str] = ()) -> None:
        if not rows:
            return
        columns = list(rows[0])
        head = "".join(f"<th>{_text(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(
            f'<td class="num">{_number(row.get(c))}</td>' if c in numeric else f"<td>{_text(row.get(c, ''))}</td>"
            for c in columns) + "</tr>" for row in rows)
        self.add(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, fig, name: str) -> None:
        """One interactive chart: its div and its Plotly.newPlot call (plotly.js is in the page once)."""
        from plotly.io.json import to_json_plotly
        from .. import figures as fg  # plotly: imported when a handout is drawn, not by `explain`
        self.figures += 1
        div = fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                          config=fg.plotly_config("png", filename=_slug(name)), div_id=f"figure-{self.figures}",
                          default_width="100%", validate=False)
        # Every figure carries its layout template (6.5 kB of plotly's defaults): written once for the page.
        template = to_json_plotly(fig.layout.template.to_plotly_json()) if fig.layout.template else None
        if template and f'"template":{template}' in div:
            index = self.templates.setdefault(template, len(self.templates))
            div = div.replace(f'"template":{template}', f'"template":window.autointTemplates[{index}]', 1)
        self.add(f'<div class="figure" data-figure="{_text(_slug(name))}">{div}</div>')

    def data_block(self, element_id: str, obj) -> None:
        self.data.append(_json_block(element_id, obj))

    def render(self) -> str:
        from plotly.offline import get_plotlyjs
        return "\n".join([
            "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f'<meta name="autoint-figures" content="{self.figures}">',
            f"<title>{_text(self.title)}</title>", f"<style>{STYLE}</style>",
            # MathJax off (as plotly's own HTML sets it), then plotly.js itself: the one copy in the file.
            "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
            f'<script type="text/javascript" id="plotly-js">{get_plotlyjs()}</script>',
            "<script>window.autointTemplates = [" + ",".join(
                t.replace("<", "\\u003c") for t in self.templates) + "];</script>",
            "</head>", "<body>", "<main>",
            '<div class="toolbar"><label>Charts download as <select id="export-format">'
            '<option value="png">PNG</option><option value="svg">SVG</option></select></label></div>',
            f"<h1>{_text(self.title)}</h1>", f'<p class="lead">{_text(self.lead)}</p>',
            *self.parts,
            "</main>", *self.data, f"<script>{FORMAT_SCRIPT}</script>", "</body>", "</html>", ""])


def _card_section(doc: Document, card: Mapping) -> None:
    doc.heading("The model", anchor="model-card")
    rows = [("Run", card["run"]), ("Model", card["model"] + (f" (preset {card['preset']})" if card.get("preset")
                                                              else "")),
            ("Data set", f"{card['dataset']} ({card['dataset_from']})"),
            ("Data fingerprint", card.get("data_fingerprint") or "–"),
            ("Test AUC", _number(card.get("test_auc"))), ("Test log loss", _number(card.get("test_logloss"))),
            ("Validation AUC", _number(card.get("val_auc"))),
            ("Epochs", f"{_number(card.get('epochs_run'))} (best: {_number(card.get('best_epoch'))})"),
            ("Seed", _number(card.get("seed"))), ("Run created", card.get("created") or "–"),
            ("Code version", card["code_version"])]
    doc.add("<table>" + "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in rows) + "</table>")
    settings = card.get("settings") or {}
    doc.add("<details><summary>Every setting of the run</summary><pre>"
            + _text(json.dumps(settings, indent=1, ensure_ascii=False)) + "</pre></details>")


def _written(lead: str) -> str:
    return f"{lead} Written {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC by AutoInt Explorer."


# ----------------------------------------------------------------------------- one sample

def _what(report: Mapping) -> str:
    """What the sample is, in words: the movie and user, or the split's row."""
    if "title" in report:
        return f"user {report.get('user')} × {report['title']} (movie {report.get('movie')})"
    if "row" in report:
        return f"{report.get('split', 'test')} sample {report['row']}"
    return "one sample"


def _labelled(values: Mapping[str, float], labels: Sequence[str]) -> list[float]:
    return [float(values[label]) for label in labels]


def _what_if_section(doc: Document, report: Mapping) -> None:
    from .. import figures as fg
    change = report["what_if"]
    before_labels, after_labels = change["labels_before"], change["labels_after"]
    labels = fg.transition_labels(before_labels, after_labels)
    doc.heading("What if …?", anchor="what-if")
    edits = [f"{name}={'|'.join(map(str, value)) if isinstance(value, list) else value}"
             for name, value in change["edits"].items()]
    doc.paragraph("<strong>Edits:</strong> " + (" · ".join(f"<code>{_text(e)}</code>" for e in edits) or "none"))
    doc.metrics([("CTR before", f"{change['ctr_before']:.1%}", f"{change['ctr_before']:.6f}"),
                 ("CTR after", f"{change['ctr_after']:.1%}", f"{change['ctr_after']:.6f}"),
                 ("Change", f"{change['ctr_change']:+.1%}", f"{change['ctr_change']:+.6f}")])
    doc.note("Every section after this one explains the sample after the edits.")
    if "interaction_change" in change and "interactions" in report:
        after = np.asarray(report["interactions"]["matrix"], dtype=float)
        delta = np.asarray(change["interaction_change"], dtype=float)
        doc.heading("What changed in the interactions the model uses", 3)
        doc.note("Pairwise Shapley interactions (k-SII, logit units) after the edit minus before: red pairs now push "
                 "the CTR up more (or down less), blue the reverse.")
        doc.figure(fg.interaction_change_heatmap(after - delta, after, labels,
                                              title="Change in pairwise interactions (after − before)"),
                   "interaction-change")
        F = len(labels)
        changes = matrix_to_pairs(delta)
        order = np.argsort(-np.abs(changes), kind="stable")[:3]
        pairs = pair_index(F)
        fields = [label.split("=")[0] for label in after_labels]
        doc.paragraph("<strong>Largest changes:</strong> " + " · ".join(
            _text(f"{fields[pairs[p][0]]} × {fields[pairs[p][1]]} {changes[p]:+.3f}") for p in order))
    attention_change = np.asarray(change.get("attention_change", []), dtype=float)
    if attention_change.ndim == 4 and attention_change.shape[0] > 0:
        doc.figure(fg.difference_heatmap(attention_change.mean(axis=(0, 1)), labels,
                                      title="Change in attention (after − before), mean of layers and heads"),
                   "attention-change")
    attribution_change = change.get("attribution_change") or {}
    shown = [m for m in attribution_change if m in (report.get("attributions") or {})]
    if shown:
        method = "integrated_gradients" if "integrated_gradients" in shown else shown[0]
        after = np.array(_labelled(report["attributions"][method], after_labels))
        before = after - np.asarray(attribution_change[method], dtype=float)
        doc.figure(fg.attribution_bars({"before": before, "after": after}, labels,
                                    title=f"{METHOD_NAMES.get(method, method)}: each field's contribution, before "
                                          "and after"), "attributions-change")


def _attention_section(doc: Document, report: Mapping, labels: list[str]) -> None:
    from .. import figures as fg
    attention = np.asarray(report["attention"], dtype=float)
    F = len(labels)
    doc.heading("Attention of every layer and head", anchor="attention")
    doc.note(f"Row m attends to column k: each row is one field's softmax over the fields (Eq. 5), so rows sum to 1. "
             f"Colour shows each weight against uniform attention (1/{F} = {1 / F:.3f}): red above, blue below, "
             "white at uniform; the hover gives the weight itself. Each title gives the head's entropy as a fraction "
             "of log F (1 = uniform).")
    flat = np.asarray(report.get("near_uniform_heads"), dtype=bool)
    if flat.size and flat.all():
        doc.note(f"Every head is close to uniform here: each weight lies within 0.02 of 1/{F}. The colours show "
                 "small differences, not a pattern.")
    elif flat.size and flat.any():
        doc.note(f"{int(flat.sum())} of {flat.size} heads are close to uniform (every weight within 0.02 of 1/{F}), "
                 "marked ≈ uniform: read no pattern into them.")
    doc.figure(fg.reading_grid(attention, labels, reading=PAPER_READING, unit=READINGS[PAPER_READING].title,
                            title="Attention (raw α, the paper's reading) per layer and head",
                            entropy=report.get("head_entropy"), uniform=report.get("near_uniform_heads")),
               "attention-grid")
    readings = report.get("readings") or {}
    reading = report.get("reading")
    if reading and reading != PAPER_READING and reading in readings:
        title = READINGS[reading].title
        doc.note(f"This model's reading shown first: {title}, {READINGS[reading].definition} "
                 f"({READINGS[reading].paper}). Its summary over the layers and heads:")
        doc.figure(fg.reading_heatmap(np.asarray(readings[reading]["matrix"], dtype=float), labels, reading=reading,
                                   unit=title, title=f"{title} (this model's reading shown first)"),
                   f"{reading}-summary")
    combinations = report.get("combinations") or []
    if combinations:
        doc.heading("Top combinations by raw attention", 3)
        doc.add("<ul>" + "".join(f"<li><strong>{c['weight']:.0%}</strong> · {_text(c['text'])}</li>"
                                 for c in combinations) + "</ul>")


def _interactions_section(doc: Document, report: Mapping, labels: list[str]) -> None:
    from .. import figures as fg
    measured = report["interactions"]
    F = len(labels)
    P = F * (F - 1) // 2
    matrix = np.asarray(measured["matrix"], dtype=float)
    main = np.asarray(measured["main"], dtype=float)
    readings = report.get("readings") or {}
    reading = report.get("reading") if report.get("reading") in readings else None
    doc.heading("What the model really combines", anchor="interactions")
    how = "every combination (2^F forwards)" if measured["method"] == "exact" else \
        f"{measured.get('budget', 0):,} combinations sampled by KernelSHAP-IQ"
    doc.note("Pairwise Shapley interactions (k-SII): how much the prediction depends on two fields together, beyond "
             f"each one alone, measured by setting fields absent ({report.get('interaction_baseline', 'mean')} "
             f"baseline) in {how} and asking the model again. Positive raises the CTR, negative lowers it, in logit "
             "units.")
    if reading is None:
        doc.figure(fg.interaction_heatmap(matrix, labels, signed=True, main=main), "interactions")
    else:
        title = READINGS[reading].title
        named = "Attention" if reading == PAPER_READING else title
        doc.figure(fg.attention_interaction_side_by_side(
            np.asarray(readings[reading]["matrix"], dtype=float), matrix, labels, signed=True, main=main,
            reading=reading, unit=title, attention_title=f"{title} (this sample)",
            title=f"{named} beside the measured interactions"), "attention-vs-interactions")
        doc.verdict(readings[reading].get("agreement"), P, f"{title} (this model's reading shown first)")
        if reading != PAPER_READING and PAPER_READING in readings:
            doc.verdict(readings[PAPER_READING].get("agreement"), P, READINGS[PAPER_READING].title)
        doc.note(f"Spearman ρ over the {P} field pairs between the reading (both directions averaged) and "
                 f"|k-SII|. Precision@3 of {title}: {_number(readings[reading].get('precision_at_3'), 2)} (how many "
                 "of the 3 strongest measured pairs it ranks in its own top 3).")
        pair_labels = [f"{labels[i].split('=')[0]} × {labels[j].split('=')[0]}" for i, j in pair_index(F)]
        shown = np.asarray(readings[reading]["matrix"], dtype=float)
        doc.figure(fg.agreement_scatter(pairs_of(shown), np.abs(matrix_to_pairs(matrix)), pair_labels,
                                     rho=_rho(readings[reading].get("agreement")),
                                     uniform_weight=1 / F if reading == PAPER_READING else None,
                                     x_title=f"{title} between the two fields (both directions averaged)",
                                     title=f"Each field pair: {title} vs interaction"), "agreement-scatter")
        doc.figure(fg.agreement_bars({READINGS[n].title: _rho(r.get("agreement")) for n, r in readings.items()},
                                  title="This sample: agreement of each reading (Spearman ρ)"), "agreement-readings")
    doc.add(f"<p class=\"note\">Check (efficiency): main effects and pair interactions add up to logit "
            f"{measured['logit']:+.4f} − baseline logit {measured['baseline_logit']:+.4f}; gap "
            f"{measured['efficiency_gap']:.1e}.</p>")
    doc.heading("Top pairs by measured interaction", 3)
    doc.table([{"pair": " × ".join(p["fields"]), "k-SII (logit)": p["value"]} for p in measured["pairs"][:10]],
              numeric=["k-SII (logit)"])


def _attributions_section(doc: Document, report: Mapping, labels: list[str]) -> None:
    from .. import figures as fg
    attributions = report.get("attributions") or {}
    if not attributions:
        return
    doc.heading("Per-field attributions", anchor="attributions")
    doc.note("How much each field moves the logit, against a neutral baseline (the training-mean embedding for "
             "Integrated Gradients; the <unknown> value for ablation and Shapley).")
    doc.figure(fg.attribution_bars({m: _labelled(v, labels) for m, v in attributions.items()}, labels,
                                method_names=METHOD_NAMES), "attributions")
    if report.get("ig_completeness_gap") is not None:
        doc.note(f"Integrated Gradients' completeness gap: {report['ig_completeness_gap']:.1e} logit.")


def sample_report(run, explained, *, about: Mapping | None = None, interaction_baseline: str = "mean",
                  reading: str | None = None) -> str:
    """One self-contained HTML handout of one prediction: the model card, the CTR, every layer and head of the
    attention, the interactions with the verdict (the run's reading shown first, and raw α), the attributions and,
    for a what-if, the edits with the CTR before and after and the changed interactions.

    run: a loaded run (training.runs.Run) or a run folder (its run.json alone is read). explained: the dict
    `explanation_json` gives (what `explain --json` prints), or a SampleExplanation or WhatIf to build it from
    with `about`, `interaction_baseline` and `reading` (see `explanation_json`)."""
    manifest, name = _manifest_and_name(run)
    if isinstance(explained, (SampleExplanation, WhatIf)):
        explained = explanation_json(explained, about or {}, interaction_baseline, reading)
    report = dict(explained)
    labels = list(report["labels"])
    card = model_card(manifest, name)
    what = _what(report)
    doc = Document(f"{card['model']} · {what}" + (" · what if" if "what_if" in report else ""),
                   _written(f"Why the model {name} predicts what it does for {what}."))
    _card_section(doc, card)
    doc.heading("The prediction", anchor="prediction")
    items = [("Predicted CTR" + (" (after the edits)" if "what_if" in report else ""), f"{report['ctr']:.1%}",
              f"σ({report['logit']:+.6f}) = {report['ctr']:.6f}")]
    if report.get("rating") is not None:
        items.append(("Real rating", "★" * int(report["rating"]) + "☆" * (5 - int(report["rating"])),
                      "4-5 stars count as a click, 1-2 as none"))
    elif "label" in report and report.get("label") is not None:
        items.append(("Real label", "click" if report["label"] else "no click", f"label {report['label']}"))
    doc.metrics(items)
    doc.paragraph("<strong>The sample's fields:</strong> " + " · ".join(f"<code>{_text(label)}</code>"
                                                                         for label in labels))
    if "what_if" in report:
        _what_if_section(doc, report)
    attention = np.asarray(report.get("attention", []), dtype=float)
    if attention.ndim == 4 and attention.shape[0] > 0:
        _attention_section(doc, report, labels)
    if report.get("interactions"):
        _interactions_section(doc, report, labels)
    _attributions_section(doc, report, labels)
    doc.data_block("model-card", card)
    doc.data_block("explanation", report)
    doc.note("The numbers behind every chart are in this file as JSON (script#explanation: what "
             "`python -m autoint explain --json` prints for this sample).")
    return doc.render()


# ----------------------------------------------------------------------------- a split

def _agreement_views(agreement: Mapping) -> dict[str, float]:
    """The JSON of an Agreement as `Agreement.views()` gives it: overall, each layer, each head."""
    out = {"overall": _rho(agreement.get("overall"))}
    for l, rho in enumerate(agreement.get("per_layer") or []):
        out[f"layer {l + 1}"] = _rho(rho)
    for l, heads in enumerate(agreement.get("per_head") or []):
        for h, rho in enumerate(heads):
            out[f"layer {l + 1} · head {h + 1}"] = _rho(rho)
    return out


def split_report(run, correlations: Mapping, interactions: Mapping | None = None) -> str:
    """One self-contained HTML handout of a split (or a slice of it), the Dataset correlations page's figures and
    tables: the model card, the mean attention (Fig. 7b) per layer and head, and, given the split's interactions,
    attention beside them with the verdict, every reading's score and the strongest pairs.

    correlations: the dict `correlations --json` prints; interactions: the dict `interactions --json` prints for
    the same split and slice (mode "split"), or None."""
    from .. import figures as fg
    manifest, name = _manifest_and_name(run)
    card = model_card(manifest, name)
    fields = list(correlations["fields"])
    F = len(fields)
    P = F * (F - 1) // 2
    split, where, count = correlations.get("split", "test"), correlations.get("where", "all samples"), \
        int(correlations["count"])
    doc = Document(f"{card['model']} · the {split} split ({where})",
                   _written(f"What the model {name} attends to, and what it really combines, over {count:,} "
                            f"{split} samples ({where})."))
    _card_section(doc, card)
    per_head = np.asarray(correlations["per_head"], dtype=float)
    per_layer = np.asarray(correlations["per_layer"], dtype=float)
    overall = np.asarray(correlations["overall"], dtype=float)
    doc.heading("Mean attention (the paper's Fig. 7b)", anchor="correlations")
    if count == 0:
        doc.note(f"No {split} sample matches {where}: there is nothing to average.")
    elif per_head.ndim == 4 and per_head.shape[0] > 0:
        doc.note(f"Averaged over the {count:,} {split} samples with {where}. Colour: each weight against uniform "
                 f"attention (1/{F} = {1 / F:.3f}); titles give the entropy as a fraction of log F (1 = uniform).")
        doc.figure(fg.correlation_figure(per_layer, fields, count=count, description=where,
                                      entropy=np.concatenate([[float(head_entropy(overall))],
                                                              head_entropy(per_layer)]),
                                      uniform=np.concatenate([[bool(near_uniform(overall))],
                                                              near_uniform(per_layer)])), "dataset-correlations")
        doc.figure(fg.attention_grid(per_head, fields, title="Mean attention per layer and head",
                                  show_values=F <= 8, entropy=head_entropy(per_head), uniform=near_uniform(per_head)),
                   "dataset-correlations-heads")
    strength = np.asarray(correlations["interactions"], dtype=float) if correlations.get("interactions") else None
    if strength is not None and count:
        readings = correlations.get("readings") or {}
        reading = correlations.get("reading") if correlations.get("reading") in readings else PAPER_READING
        title = READINGS[reading].title
        if reading == PAPER_READING:  # Fig. 7(b) itself, over every sample of the slice
            shown, rho = overall, (correlations.get("agreement") or {}).get("overall")
        else:
            shown, rho = np.asarray(readings[reading]["matrix"], dtype=float), readings[reading].get("agreement")
        method = correlations.get("interaction_method") or {}
        doc.heading("Attention beside the interactions the model really uses", anchor="interactions")
        doc.note(f"Right: the mean |pairwise Shapley interaction| (k-SII) over {method.get('rows', count):,} measured "
                 f"samples, in logit units ({correlations.get('interaction_baseline', 'mean')} baseline; "
                 f"{method.get('method', 'exact')}).")
        main = np.asarray(interactions["main"], dtype=float) if interactions and interactions.get("main") else None
        doc.figure(fg.attention_interaction_side_by_side(
            shown, strength, fields, signed=False, main=main, reading=reading, unit=title,
            attention_title=f"{title} (mean over the samples)",
            title=f"{'Fig. 7(b)' if reading == PAPER_READING else title} beside the measured interactions "
                  f"({where})", interaction_title="Mean |interaction| (k-SII, logit)"), "attention-vs-interactions")
        doc.verdict(rho, P, f"{title} (this model's reading shown first)")
        if reading != PAPER_READING:
            doc.verdict((correlations.get("agreement") or {}).get("overall"), P, READINGS[PAPER_READING].title)
        if readings:
            doc.heading("Every reading of this split, scored against the interactions", 3)
            doc.table([{"reading": READINGS[n].title, "split ρ": _rho(r.get("agreement")),
                        "median per-sample ρ": (r.get("per_sample_agreement") or {}).get("median"),
                        "precision@3": r.get("precision_at_3"), "paper": READINGS[n].paper}
                       for n, r in ((n, readings[n]) for n in NAMES if n in readings)],
                      numeric=["split ρ", "median per-sample ρ", "precision@3"])
        doc.figure(fg.agreement_scatter(pairs_of(shown), matrix_to_pairs(strength),
                                     [f"{fields[i]} × {fields[j]}" for i, j in pair_index(F)], rho=_rho(rho),
                                     uniform_weight=1 / F if reading == PAPER_READING else None,
                                     x_title=f"{title} between the two fields (both directions averaged)",
                                     title=f"The {P} field pairs"), "agreement-scatter")
        if correlations.get("agreement"):
            doc.figure(fg.agreement_bars(_agreement_views(correlations["agreement"]),
                                      title="Raw α: agreement per layer and head (Spearman ρ)"), "agreement-bars")
        doc.heading("Strongest field pairs", 3)
        attention_pairs, interaction_pairs = matrix_to_pairs(overall), matrix_to_pairs(strength)
        attention_rank, interaction_rank = strength_ranks(attention_pairs), strength_ranks(interaction_pairs)
        rows = [{"pair": f"{fields[i]} ↔ {fields[j]}", "mean attention": float(attention_pairs[p]),
                 "rank by attention": int(attention_rank[p]), "mean |interaction|": float(interaction_pairs[p]),
                 "rank by interaction": int(interaction_rank[p]),
                 "first attends to second": float(overall[i, j]), "second attends to first": float(overall[j, i])}
                for p, (i, j) in enumerate(pair_index(F))]
        doc.table(sorted(rows, key=lambda r: r["rank by interaction"]),
                  numeric=["mean attention", "rank by attention", "mean |interaction|", "rank by interaction",
                           "first attends to second", "second attends to first"])
    if interactions and interactions.get("signed_matrix"):
        doc.heading("Signed interactions of the split", 3)
        doc.note("The mean signed k-SII over the measured samples: red pairs raise the CTR together, blue lower it.")
        doc.figure(fg.interaction_heatmap(np.asarray(interactions["signed_matrix"], dtype=float), fields, signed=True,
                                       title="Mean signed interaction (k-SII, logit)"), "signed-interactions")
    doc.data_block("model-card", card)
    doc.data_block("correlations", correlations)
    if interactions is not None:
        doc.data_block("interactions", interactions)
    doc.note("The numbers behind every chart are in this file as JSON (script#correlations: what "
             "`python -m autoint correlations --json` prints; script#interactions: `interactions --json`).")
    return doc.render()


# ----------------------------------------------------------------------------- writing it

def check_out(out: str | os.PathLike) -> Path:
    """Where a handout goes: refused before any work if its folder does not exist or it is a folder."""
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / 'handout.html'}.")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist.")
    return out


def write_handout(text: str, out: str | os.PathLike) -> Path:
    """Write a handout whole or not at all: a temporary file beside `out`, then os.replace."""
    out = check_out(out)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
