"""What the HTML report shows beyond its PNGs: the findings of a run (a few sentences and a table, written from
the results, that the report's landing page shows first), tables as HTML (the report downloads a CSV instead of
showing it) and one self-contained page of interactive views per dataset.

The interactive page carries its own small viewer (matprobe.report.viewer, SVG and a canvas, about 12 kB), not
Plotly: a Snakemake report shows an HTML result in an iframe whose source is a data: URL, which cannot reach the
report's own scripts and which Chromium refuses above 2 MB, and Plotly's JavaScript is 4.7 MB. Nothing is fetched
from a network: the report works offline (clusters, air-gapped nodes). The views of a dataset share one page and a
menu picks the view, drawn when picked."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe import MatprobeError
from matprobe.io import atomic_path
from matprobe.prepare.splits import CONTROL_SUFFIX, split_base, split_kind
from matprobe.vocabulary import SET_LABELS, target_units as units

MODEL_NAMES = {"cgcnn": "CGCNN", "schnet": "SchNet"}
# the figures' colour-blind-safe set colours (matprobe.figures.style.set_colors), as hex
SET_COLOURS = {"train": "#0173b2", "val": "#cc78bc", "id_test": "#029e73", "ood_test": "#d55e00"}
# crystals drawn in all parity views of a page together: the report shows the page from a data: URL, which Chromium
# refuses over 2 MB (about 1.5 MB of page once the report encodes it); ~60 bytes a crystal
PARITY_POINTS = 12_000
MAX_PAGE_BYTES = 1_500_000
log = logging.getLogger(__name__)

TABLE_STYLE = """
<style>
/* the report's landing page keeps its text to a narrow column (max-w-lg, 32rem): the findings table needs more, but
   not so much that the workflow graph beside it pushes the page under the sidebar */
.prose.max-w-lg { max-width: 46rem; min-width: 30rem; }
.matprobe-findings { font-family: system-ui, sans-serif; font-size: 14px; line-height: 1.45; max-width: 60rem; }
.matprobe-findings table, table.matprobe { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 13px; }
.matprobe-findings th, .matprobe-findings td, table.matprobe th, table.matprobe td {
  border-bottom: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
.matprobe-findings th { white-space: normal; }
.matprobe-findings th, table.matprobe th { background: #f3f4f6; text-align: left; }
.matprobe-findings td.text, table.matprobe td.text { text-align: left; }
.matprobe-findings p { margin: 0.4em 0; }
.matprobe-findings h3 { font-size: 15px; margin: 1em 0 0.2em; }
</style>
"""


def model_name(model: str) -> str:
    return MODEL_NAMES.get(model, model)


# short names of targets for the report's folder names (the figures and their titles use the full name)
SHORT_TARGETS = {"formation_energy_per_atom": "E_form", "band_gap": "band gap", "band_gap_mbj": "band gap (mBJ)", "e_above_hull": "E_hull"}


def run_subcategory(keys, config: dict | None = None) -> str:
    """The report's folder of one run's figures, short (the report's sidebar grows to the longest folder name in its
    breadcrumb, taking the figures' width): model, then split, so each omission sits beside its control, then the
    target and seed where the study has several: 'CGCNN · omit-O-control', 'SchNet · omit-Fe · E_form · seed 2'."""
    parts = [model_name(keys["model"]), str(keys["split"])]
    if config is None or len(config.get("targets", [])) > 1:
        parts.append(SHORT_TARGETS.get(keys["target"], str(keys["target"])))
    if config is None or len(config.get("seeds", [])) > 1:
        parts.append(f"seed {keys['seed']}")
    return " · ".join(parts)


def run_title(keys) -> str:
    """What a per-run figure's title names: target, split, model and seed."""
    return f"{str(keys['target']).replace('_', ' ')} · {keys['split']} · {model_name(keys['model'])} · seed {keys['seed']}"


def _fmt(value, decimals: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{decimals}f}"


def _range(row, measure: str, decimals: int) -> str:
    """The median over seeds and, with several seeds, their range."""
    text = _fmt(row[measure], decimals)
    if row.get("seeds", 1) > 1 and f"{measure}_min" in row and not pd.isna(row[measure]):
        text += f" ({_fmt(row[f'{measure}_min'], decimals)}–{_fmt(row[f'{measure}_max'], decimals)})"
    return text


def findings_table(headlines: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset, target, omission (or other split) and model: ID and held-out error, the size-matched
    control's held-out error and the omission's held-out error over the control's. Controls appear as the third
    column of their omission, not as rows of their own."""
    required = {"dataset", "target", "split", "model", "id_mae", "ood_mae", "seeds"}
    missing = required - set(headlines.columns)
    if missing:
        raise MatprobeError(f"headline table: missing columns {sorted(missing)}")
    by_key = {(r.dataset, r.target, r.split, r.model): r for r in headlines.itertuples(index=False)}
    rows = []
    for row in headlines.to_dict("records"):
        if split_kind(row["split"]) == "control":
            continue
        control = by_key.get((row["dataset"], row["target"], row["split"] + CONTROL_SUFFIX, row["model"]))
        control_ood = None if control is None else control.ood_mae
        rows.append({**row, "control_ood_mae": control_ood,
                     "ood_over_control": row["ood_mae"] / control_ood if control_ood and not pd.isna(row["ood_mae"]) else None})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["dataset", "target", "split", "model"], key=lambda c: c.map(lambda v: split_base(v)) if c.name == "split" else c,
                             kind="stable").reset_index(drop=True)


def _sentences(table: pd.DataFrame, target: str) -> list[str]:
    """What the table says, per omission: the held-out error beside the control's, and which omission costs most."""
    unit = units(target)
    out = []
    with_control = table[table["ood_over_control"].notna()]
    for split, group in with_control.groupby("split", sort=False):
        parts = [f"{model_name(r.model)} {_fmt(r.ood_mae)} against its control's {_fmt(r.control_ood_mae)} {unit} "
                 f"({r.ood_over_control:.1f}×)" for r in group.itertuples()]
        out.append(f"<b>{html.escape(split)}</b>: held-out error of " + "; ".join(parts) + ".")
    if with_control["split"].nunique() > 1:
        worst = with_control.groupby("split")["ood_over_control"].median().sort_values()
        out.append(f"Holding out costs most in <b>{html.escape(worst.index[-1])}</b> (median {worst.iloc[-1]:.1f}× the control's "
                   f"held-out error) and least in <b>{html.escape(worst.index[0])}</b> ({worst.iloc[0]:.1f}×).")
    alone = table[table["ood_over_control"].isna() & table["ood_mae"].notna()]
    for r in alone.itertuples():
        out.append(f"<b>{html.escape(r.split)}</b>, {model_name(r.model)}: held-out error {_fmt(r.ood_mae)} {unit}, "
                   f"{r.ood_mae / r.id_mae:.1f}× its ID error (no control)." if r.id_mae else "")
    return [sentence for sentence in out if sentence]


def _atlas_sentences(atlas: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """A sweep's omissions per target and model: how many were held out, the call of each where the atlas makes one,
    and those whose held-out error is furthest above their control's."""
    sentences, counts = [], []
    for (target, model), group in atlas.groupby(["target", "model"], sort=True):
        ranked = group.sort_values("ood_over_control", ascending=False)
        row = {"target": target, "model": model_name(model), "omissions": len(group),
               "median held-out / control": float(group["ood_over_control"].median())}
        words = f"{target.replace('_', ' ')}, {model_name(model)}: {len(group)} omissions"
        if "call" in group.columns:
            calls = group["call"].value_counts()
            row.update(calls.to_dict())
            words += " (" + ", ".join(f"{n} {call}" for call, n in calls.items()) + ")"
        top = [f"{e} ({r:.1f}×)" for e, r in zip(ranked["held_out"], ranked["ood_over_control"]) if not pd.isna(r)][:6]
        sentences.append(words + (f"; held-out error furthest above the control's: {', '.join(top)}." if top else "."))
        counts.append(row)
    return sentences, pd.DataFrame(counts)


def findings_html(headline_paths: list, out_html, atlas_paths: list | None = None) -> pd.DataFrame:
    """The landing page's findings: per dataset and target a few sentences and a table of ID error, held-out error,
    the control's held-out error and their ratio per split and model (from the headline tables of training); for a
    sweep, the atlas's calls. Written as an HTML fragment that the report's landing page includes."""
    frames = []
    for path in headline_paths:
        try:
            frames.append(pd.read_csv(path))
        except (OSError, ValueError) as error:
            raise MatprobeError(f"{path}: cannot read the headline table ({error})") from error
    table = findings_table(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()
    parts = [TABLE_STYLE, '<div class="matprobe-findings" id="matprobe-findings">', "<h2>Findings of this run</h2>",
             "<p>Each omission split trains without every crystal containing an element and tests on them (held-out "
             "error); its size-matched control trains on as many crystals with the element present. A ratio near 1 "
             "means the held-out chemistry is predicted as well as by a model that saw it. Errors are test-set MAE, "
             "the median over seeds (range in brackets).</p>"]
    for (dataset, target), group in (table.groupby(["dataset", "target"], sort=False) if not table.empty else []):
        unit = units(target)
        parts.append(f"<h3>{html.escape(str(dataset))}: {html.escape(target.replace('_', ' '))} ({unit})</h3>")
        parts += [f"<p>{sentence}</p>" for sentence in _sentences(group, target)]
        header = ["split", "model", "seeds", "ID test MAE", "held-out MAE", "control's held-out MAE", "held-out / control"]
        rows = []
        for r in group.to_dict("records"):
            cells = [f'<td class="text">{html.escape(r["split"])}</td>', f'<td class="text">{model_name(r["model"])}</td>',
                     f"<td>{int(r['seeds'])}</td>", f"<td>{_range(r, 'id_mae', 3)}</td>", f"<td>{_range(r, 'ood_mae', 3)}</td>",
                     f"<td>{_fmt(r['control_ood_mae'])}</td>",
                     f"<td><b>{_fmt(r['ood_over_control'], 2)}</b></td>"]
            rows.append("<tr>" + "".join(cells) + "</tr>")
        parts.append('<table class="findings-table"><thead><tr>' + "".join(f"<th>{h}</th>" for h in header)
                     + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    for path in atlas_paths or []:
        atlas = pd.read_parquet(path)
        if atlas.empty or not {"target", "model", "held_out", "ood_over_control"} <= set(atlas.columns):
            continue
        sentences, counts = _atlas_sentences(atlas)
        parts.append(f"<h3>Atlas of the sweep ({html.escape(str(atlas['dataset'].iloc[0]) if 'dataset' in atlas else '')})</h3>")
        parts += [f"<p>{html.escape(sentence, quote=False)}</p>" for sentence in sentences]
        parts.append(frame_to_html(counts, classes="findings-atlas"))
    if table.empty:
        parts.append("<p>No headline table: no model was trained.</p>")
    parts.append("<p>Where to look next: <i>1 Headline</i> for the headline figure and every run's numbers, "
                 "<i>3 Loss landscapes</i> and <i>6 Interactive</i> for the loss surfaces around the trained weights.</p>")
    parts.append("</div>")
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text("\n".join(parts) + "\n", encoding="utf-8")
    return table


def frame_to_html(frame: pd.DataFrame, classes: str = "", decimals: int = 4) -> str:
    """A table as HTML: numbers right-aligned and rounded, text left-aligned."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, (float, np.floating)):
                cells.append(f"<td>{'–' if pd.isna(value) else f'{value:.{decimals}g}'}</td>")
            elif isinstance(value, (int, np.integer, bool, np.bool_)):
                cells.append(f"<td>{value}</td>")
            else:
                cells.append(f'<td class="text">{html.escape(str(value))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="matprobe {classes}"><thead><tr>{head}</tr></thead><tbody>' + "".join(body) + "</tbody></table>")


def table_page(csv_path, out_html, title: str, note: str = "", columns: list[str] | None = None) -> None:
    """A CSV as a standalone HTML page the report shows inline (it offers a CSV as a download only)."""
    try:
        frame = pd.read_csv(csv_path)
    except (OSError, ValueError) as error:
        raise MatprobeError(f"{csv_path}: cannot read the table ({error})") from error
    if columns:
        frame = frame[[c for c in columns if c in frame.columns]]
    # a column with one value in every row (the dataset, the target of a one-target study) is said once, above
    constant = [c for c in frame.columns if len(frame) > 1 and frame[c].nunique(dropna=False) == 1 and frame[c].dtype == object]
    said = "; ".join(f"{c}: {frame[c].iloc[0]}" for c in constant)
    frame = frame.drop(columns=constant)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{TABLE_STYLE}"
            "<style>body{font-family:system-ui,sans-serif;font-size:13px;margin:8px}</style></head><body>"
            f"<h3>{html.escape(title)}</h3><p>{html.escape(note)}{' Every row: ' + html.escape(said) + '.' if said else ''}</p>"
            f"{frame_to_html(frame)}</body></html>")
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")


# ---- interactive views ------------------------------------------------------------------------------------------

def _landscape_view(grid: pd.DataFrame, keys: dict) -> dict:
    """The 2D plane of one run as a rotatable surface beside a heatmap of the same grid, one set at a time (buttons
    switch), the trained weights marked on both; log10 MAE on one colour scale for every set."""
    plane = grid[grid["grid"] == "2d"].assign(log_mae=lambda f: np.log10(f["mae"].clip(lower=1e-12)))
    sets = [s for s in SET_LABELS if s in set(plane["set"])]
    if not sets:
        raise MatprobeError(f"landscape of {run_title(keys)}: the grid has no 2D plane")
    spec = {"kind": "landscape", "title": f"2D loss landscape · {run_title(keys)}", "unit": units(keys["target"]),
            "zlabel": f"log10 MAE ({units(keys['target'])})", "sets": {},
            "note": "The same two filter-normalised directions and the same colour scale for every set: a basin of the "
                    "training loss that the held-out (OOD) loss does not share shows as a minimum that moves away from +."}
    for set_name in sets:
        sub = plane[plane["set"] == set_name].pivot(index="beta", columns="alpha", values="log_mae").sort_index().sort_index(axis=1)
        spec["alpha"], spec["beta"] = [float(a) for a in sub.columns], [float(b) for b in sub.index]
        spec["sets"][SET_LABELS[set_name]] = {"z": np.round(sub.to_numpy(), 4).tolist()}  # the viewer shows 10^z on hover
    spec["origin"] = [int(np.argmin(np.abs(spec["beta"]))), int(np.argmin(np.abs(spec["alpha"])))]
    spec["low"], spec["high"] = float(plane["log_mae"].min()), float(plane["log_mae"].quantile(0.98))
    spec["active"] = SET_LABELS["ood_test"] if "ood_test" in sets else SET_LABELS[sets[0]]
    return spec


def _parity_view(predictions: pd.DataFrame, materials: pd.DataFrame, keys: dict, points: int, seed: int = 0) -> dict:
    """Predicted against DFT values per set, each crystal with its id, formula and error on hover; at most `points`
    crystals in all (a set over its share is sampled, and its legend says how many are shown), training and
    validation hidden until picked."""
    frame = predictions.join(materials, on="id")
    unit, name = units(keys["target"]), str(keys["target"]).replace("_", " ")
    # the test sets, which the view is about, get the larger shares
    shares = {"train": 0.15, "val": 0.1, "id_test": 0.35, "ood_test": 0.4}
    series = []
    for set_name in SET_LABELS:
        subset = frame[frame["set"] == set_name]
        if subset.empty:
            continue
        mae = float((subset["y_pred"] - subset["y_true"]).abs().mean())
        cap = max(50, int(points * shares[set_name]))
        label = f"{SET_LABELS[set_name]} (n={len(subset)}, MAE {mae:.3f})"
        if len(subset) > cap:
            label = f"{SET_LABELS[set_name]} ({cap} of {len(subset)} shown, MAE {mae:.3f})"
            subset = subset.sample(cap, random_state=seed)
        series.append({"name": label, "color": SET_COLOURS[set_name], "x": np.round(subset["y_true"], 3).tolist(),
                       "y": np.round(subset["y_pred"], 3).tolist(), "id": subset["id"].astype(str).tolist(),
                       "formula": subset["formula"].fillna("?").astype(str).tolist(), "visible": set_name in ("id_test", "ood_test")})
    return {"kind": "scatter", "title": f"Parity · {run_title(keys)}", "xlabel": f"DFT {name} ({unit})",
            "ylabel": f"predicted {name} ({unit})", "unit": unit, "series": series, "diagonal": True}


def _knob_view(responses: dict[str, pd.DataFrame], summaries: dict[str, pd.DataFrame], keys: dict) -> dict:
    """Knob (decoder sweep) and concept-direction (linear baseline) response curves of one omission beside its
    control: the mean contribution of the swept atoms per knob value, one panel per knob that works in both models
    and does not disagree with the crystal's interventions; the others are named in the note, with why."""
    every = list(dict.fromkeys(a for frame in responses.values() for a in frame["attribute"]))
    splits = list(responses)
    not_drawn = {}
    for split, summary in summaries.items():
        for attribute in every:
            rows = summary[summary["attribute"] == attribute]
            if attribute in not_drawn or rows.empty:
                continue
            if not bool(rows["knob_works"].iloc[0]):
                not_drawn[attribute] = f"{rows['check_failed'].iloc[0]} in {split}"
            elif "agrees_with_crystal" in rows and rows["agrees_with_crystal"].iloc[0] == "disagrees":
                not_drawn[attribute] = f"disagrees with the crystal's interventions in {split}"
    attributes = [a for a in every if a not in not_drawn]
    dashes = {("knob", 0): "", ("concept", 0): "2,3", ("knob", 1): "8,4", ("concept", 1): "1,4"}
    legend, panels = [], []
    for s, split in enumerate(splits):
        for set_name in ("id_test", "ood_test"):
            for kind in ("knob", "concept"):
                legend.append({"name": f"{split} · {SET_LABELS[set_name]} · {kind}", "color": SET_COLOURS[set_name], "dash": dashes[(kind, s % 2)]})
    means = {split: (frame[frame["atoms"] == "all"].groupby(["set", "attribute", "step"], sort=True)
                     .agg(value=("value", "first"), knob=("contribution", "mean"), concept=("concept_contribution", "mean"))
                     .reset_index()) for split, frame in responses.items()}
    for attribute in attributes:
        series = []
        for s, split in enumerate(splits):
            summary = summaries.get(split)
            for set_name in ("id_test", "ood_test"):
                curve = means[split][(means[split]["set"] == set_name) & (means[split]["attribute"] == attribute)]
                if curve.empty:
                    continue
                note = ""
                if summary is not None:
                    row = summary[(summary["set"] == set_name) & (summary["attribute"] == attribute)]
                    if len(row):
                        note = f"knob fidelity R² {float(row['fidelity'].iloc[0]):.2f}"
                for kind in ("knob", "concept"):
                    series.append({"name": f"{split} · {SET_LABELS[set_name]} · {kind}", "color": SET_COLOURS[set_name],
                                   "dash": dashes[(kind, s % 2)], "width": 2 if kind == "knob" else 1.5, "note": note,
                                   "x": np.round(curve["value"].astype(float), 5).tolist(), "y": np.round(curve[kind].astype(float), 6).tolist()})
        panels.append({"title": attribute.replace("_", " "), "xlabel": "knob value", "ylabel": f"mean contribution ({units(keys['target'])})",
                       "series": series})
    missing = "; ".join(f"{a.replace('_', ' ')}: {why}" for a, why in not_drawn.items())
    return {"kind": "lines", "title": f"Knob responses · {run_title(keys)}", "legend": legend, "panels": panels,
            "note": "Per knob, the mean contribution of the swept ID and OOD atoms as the knob (the decoder) and the concept "
                    "direction (a linear baseline in h) turn it; the omission beside its control."
                    + (f" Not drawn: {missing}." if missing else "")}


def _atlas_view(atlas: pd.DataFrame) -> dict:
    """The sweep's omissions on the periodic table, coloured by held-out error over the control's (log2), with its
    interval and call where the atlas has them and n on hover; a menu switches between targets and models."""
    from pymatgen.core.periodic_table import Element

    panels, values = [], []
    for (target, model), group in atlas.groupby(["target", "model"], sort=True):
        cells = []
        for record in group.dropna(subset=["held_out"]).to_dict("records"):
            try:
                element = Element(str(record["held_out"]))
            except ValueError:  # a group or period held out, not an element
                continue
            ratio = float(record["ood_over_control"])
            x = element.group if element.block != "f" else 3 + (element.Z - 57 if element.Z < 90 else element.Z - 89)
            y = element.row + (2 if element.block == "f" else 0)
            text = f"{element.symbol} held out: held-out / control {ratio:.2f}"
            if "ood_over_control_low" in record:
                text += f" ({record['ood_over_control_low']:.2f}–{record['ood_over_control_high']:.2f})"
            if "paired_ood_mae" in record:  # both models scored on the same held-out crystals (matprobe.studies.atlas)
                pairs = f"{record.get('n_scored')} seed-crystal pairs of " if record.get("n_scored") else ""
                text += (f"\nMAE over the {pairs}{record.get('n_paired')} paired crystals ({record.get('n_families')} families): "
                         f"{_fmt(record['paired_ood_mae'])}, control's {_fmt(record.get('paired_control_mae'))}")
            else:
                text += f"\nheld-out MAE {_fmt(record.get('ood_mae'))}, control's {_fmt(record.get('control_ood_mae'))}"
                text += f"\nn held-out {record.get('n_ood')}"
            text += f"\nseeds {record.get('seeds')}"
            if "call" in record:
                text += f"\ncall: {record['call']}"
            value = float(np.log2(max(ratio, 1e-3))) if np.isfinite(ratio) else 0.0
            values.append(value)
            cells.append({"symbol": element.symbol, "x": int(x), "y": int(y), "value": value, "short": f"{ratio:.1f}×", "text": text})
        panels.append({"label": f"{target.replace('_', ' ')} · {model_name(model)}", "cells": cells})
    span = max([abs(v) for v in values] + [1.0])
    return {"kind": "atlas", "title": "Atlas: held-out error over the size-matched control's, per element held out", "panels": panels,
            "low": -span, "high": span, "colour_label": "log2(held-out / control)",
            "note": "Red: the omission's held-out error above its control's; blue: below. Hover a cell for its numbers."}


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>{css}</style>
</head><body>
<label for="picker"><b>{title}</b> · view: </label>
<select id="picker">{options}</select>
<div id="plot" data-marks="0"></div>
<script type="application/json" id="views">{views}</script>
<script>{script}</script>
</body></html>
"""


def interactive_page(views: dict[str, dict], groups: dict[str, list[str]], title: str, out_html) -> None:
    """One self-contained page: the viewer (matprobe.report.viewer), every view as JSON, a menu to pick one."""
    from matprobe.report.viewer import VIEWER_CSS, VIEWER_JS

    if not views:
        raise MatprobeError(f"{out_html}: no interactive view to write")
    options = "".join(f'<optgroup label="{html.escape(group)}">'
                      + "".join(f'<option value="{html.escape(name)}">{html.escape(name)}</option>' for name in names)
                      + "</optgroup>" for group, names in groups.items() if names)
    # '</' inside the JSON would end the script element early
    payload = json.dumps(views, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    page = PAGE.format(title=html.escape(title), css=VIEWER_CSS, options=options, views=payload, script=VIEWER_JS)
    if len(page.encode()) > MAX_PAGE_BYTES:
        log.warning("%s: %d bytes, over the %d that a report's data: URL holds in Chromium: the report may show it blank "
                    "(open the file itself, or analyse fewer seeds: analysis_seeds)", out_html, len(page.encode()), MAX_PAGE_BYTES)
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")


def interactive_views(dataset: str, landscape_runs: list[dict], grid_paths: list, parity_runs: list[dict], prediction_paths: list,
                      materials_path, knob_runs: list[dict], knob_response_paths: list, knob_summary_paths: list, out_html,
                      atlas_path=None) -> list[str]:
    """A dataset's interactive page: each analysed run's 2D landscape, each model's parity plot, the knob and
    intervention responses of each omission beside its control (knob_runs lists omissions and controls; a control
    is drawn with its omission), and a sweep's atlas. Returns the names of the views."""
    views, groups = {}, {"2D loss landscapes": [], "Parity": [], "Knob responses": [], "Atlas": []}
    for keys, path in zip(landscape_runs, grid_paths):
        name = f"landscape · {run_title(keys)}"
        views[name] = _landscape_view(pd.read_parquet(path), keys)
        groups["2D loss landscapes"].append(name)
    materials = pd.read_parquet(materials_path, columns=["id", "reduced_formula"]).rename(columns={"reduced_formula": "formula"}).set_index("id")
    for keys, path in zip(parity_runs, prediction_paths):
        name = f"parity · {run_title(keys)}"
        views[name] = _parity_view(pd.read_parquet(path, columns=["id", "set", "y_true", "y_pred"]), materials, keys,
                                   points=PARITY_POINTS // max(1, len(parity_runs)))
        groups["Parity"].append(name)
    knob_files = {tuple(keys[k] for k in ("target", "split", "model", "seed")): (r, s)
                  for keys, r, s in zip(knob_runs, knob_response_paths, knob_summary_paths)}
    for keys in knob_runs:
        if split_kind(keys["split"]) == "control":
            continue
        pair = [keys["split"]] + ([keys["split"] + CONTROL_SUFFIX]
                                  if (keys["target"], keys["split"] + CONTROL_SUFFIX, keys["model"], keys["seed"]) in knob_files else [])
        responses = {split: pd.read_parquet(knob_files[(keys["target"], split, keys["model"], keys["seed"])][0]) for split in pair}
        summaries = {split: pd.read_parquet(knob_files[(keys["target"], split, keys["model"], keys["seed"])][1]) for split in pair}
        view = _knob_view(responses, summaries, keys)
        if not view["panels"]:  # every knob failed a check: nothing to draw (the knob figure's table says why)
            continue
        name = f"knobs · {run_title(keys)}"
        views[name] = view
        groups["Knob responses"].append(name)
    if atlas_path is not None:
        atlas = pd.read_parquet(atlas_path)
        if not atlas.empty:
            views["atlas"] = _atlas_view(atlas)
            groups["Atlas"].append("atlas")
    interactive_page(views, groups, f"Interactive views of {dataset}", out_html)
    return list(views)
