"""What the HTML report shows beyond its PNGs: the findings of a run (a few sentences and a table, written from
the results, that the report's landing page shows first), tables as HTML (the report downloads a CSV instead of
showing it) and one self-contained page of interactive views per dataset.

The interactive page uses Plotly: it draws rotatable 3D surfaces, contours and hover labels from one library, and
its JavaScript (about 4.7 MB) can be embedded in the page itself, so the report works offline (clusters,
air-gapped nodes). A Snakemake report shows an HTML result in an iframe from a data: URI, which cannot reach the
report's own scripts, so each HTML result must carry its own JavaScript: the views of a dataset share one page
(the library embedded once) and a menu picks the view, drawn when picked."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from matprobe import MatprobeError
from matprobe.io import atomic_path
from matprobe.splits import CONTROL_SUFFIX, split_base, split_kind

UNITS = {"formation_energy_per_atom": "eV/atom", "band_gap": "eV", "band_gap_mbj": "eV", "e_above_hull": "eV/atom"}
MODEL_NAMES = {"cgcnn": "CGCNN", "schnet": "SchNet"}
SET_LABELS = {"train": "train", "val": "val", "id_test": "ID test", "ood_test": "OOD test"}
# the figures' colour-blind-safe set colours (matprobe.figures.style.set_colors), as hex
SET_COLOURS = {"train": "#0173b2", "val": "#cc78bc", "id_test": "#029e73", "ood_test": "#d55e00"}
# training crystals drawn in the parity view: enough to show the fit, few enough to keep the page small
PARITY_TRAIN_POINTS = 600

TABLE_STYLE = """
<style>
/* the report's landing page keeps its text to a narrow column (max-w-lg): the findings table needs more */
.prose.max-w-lg { max-width: 62rem; }
.matprobe-findings { font-family: system-ui, sans-serif; font-size: 14px; line-height: 1.45; max-width: 60rem; }
.matprobe-findings table, table.matprobe { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 13px; }
.matprobe-findings th, .matprobe-findings td, table.matprobe th, table.matprobe td {
  border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
.matprobe-findings th, table.matprobe th { background: #f3f4f6; }
.matprobe-findings td.text, table.matprobe td.text { text-align: left; }
.matprobe-findings p { margin: 0.4em 0; }
.matprobe-findings h3 { font-size: 15px; margin: 1em 0 0.2em; }
</style>
"""


def model_name(model: str) -> str:
    return MODEL_NAMES.get(model, model)


def units(target: str) -> str:
    return UNITS.get(target, "target units")


def run_subcategory(keys) -> str:
    """The report's folder of one run's figures: model, then split (so each omission sits beside its control),
    seed and target, in words: 'CGCNN · omit-O · seed 0 · formation energy per atom'."""
    return f"{model_name(keys['model'])} · {keys['split']} · seed {keys['seed']} · {str(keys['target']).replace('_', ' ')}"


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
        words = f"{target.replace('_', ' ')}, {model_name(model)}: {len(group)} elements held out"
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
        header = ["split", "model", "seeds", f"ID test MAE", f"held-out MAE", f"control's held-out MAE", "held-out / control"]
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
        if atlas.empty or "call" not in atlas.columns:
            continue
        sentences, counts = _atlas_sentences(atlas)
        parts.append(f"<h3>Atlas of the sweep ({html.escape(str(atlas['dataset'].iloc[0]) if 'dataset' in atlas else '')})</h3>")
        parts += [f"<p>{html.escape(sentence)}</p>" for sentence in sentences]
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
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{TABLE_STYLE}"
            "<style>body{font-family:system-ui,sans-serif;font-size:13px;margin:8px}</style></head><body>"
            f"<h3>{html.escape(title)}</h3><p>{html.escape(note)}</p>{frame_to_html(frame)}</body></html>")
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")


# ---- interactive views ------------------------------------------------------------------------------------------

def _landscape_view(grid: pd.DataFrame, keys: dict) -> dict:
    """The 2D plane of one run as a rotatable surface and a contour over the same directions, one set shown at a
    time (a menu switches), the trained weights marked on both; log10 MAE on one colour scale for every set."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    plane = grid[grid["grid"] == "2d"].assign(log_mae=lambda f: np.log10(f["mae"].clip(lower=1e-12)))
    sets = [s for s in SET_LABELS if s in set(plane["set"])]
    if not sets:
        raise MatprobeError(f"landscape of {run_title(keys)}: the grid has no 2D plane")
    low, high = float(plane["log_mae"].min()), float(plane["log_mae"].quantile(0.98))
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "xy"}]], column_widths=[0.55, 0.45],
                        subplot_titles=("surface (drag to rotate)", "contour (same directions and colours)"))
    visible_of = []
    for k, set_name in enumerate(sets):
        sub = plane[plane["set"] == set_name].pivot(index="beta", columns="alpha", values="log_mae")
        mae = 10 ** sub.values
        shown = k == sets.index("ood_test") if "ood_test" in sets else k == 0
        alpha, beta = sub.columns.to_numpy(), sub.index.to_numpy()
        i0, j0 = int(np.argmin(np.abs(beta))), int(np.argmin(np.abs(alpha)))
        hover = "α %{x:.2f}, β %{y:.2f}<br>MAE %{customdata:.4g} " + units(keys["target"]) + f"<extra>{SET_LABELS[set_name]}</extra>"
        fig.add_trace(go.Surface(x=alpha, y=beta, z=sub.values, customdata=mae, cmin=low, cmax=high, colorscale="Viridis",
                                 colorbar={"title": "log10 MAE", "x": 1.02}, name=SET_LABELS[set_name], visible=shown,
                                 hovertemplate=hover), row=1, col=1)
        fig.add_trace(go.Scatter3d(x=[0.0], y=[0.0], z=[float(sub.values[i0, j0])], mode="markers", visible=shown,
                                   marker={"color": "red", "size": 5}, name="trained weights",
                                   hovertemplate="trained weights<br>MAE %{customdata:.4g}<extra></extra>",
                                   customdata=[float(mae[i0, j0])]), row=1, col=1)
        fig.add_trace(go.Contour(x=alpha, y=beta, z=sub.values, customdata=mae, zmin=low, zmax=high, colorscale="Viridis",
                                 showscale=False, visible=shown, name=SET_LABELS[set_name], hovertemplate=hover,
                                 contours={"coloring": "heatmap"}), row=1, col=2)
        fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", marker={"symbol": "cross", "color": "red", "size": 11},
                                 visible=shown, name="trained weights", hovertemplate="trained weights<extra></extra>"), row=1, col=2)
        visible_of.append(set_name)
    per_set = 4
    buttons = []
    for k, set_name in enumerate(sets):
        visible = [trace // per_set == k for trace in range(per_set * len(sets))]
        buttons.append({"label": SET_LABELS[set_name], "method": "update", "args": [{"visible": visible}]})
    active = sets.index("ood_test") if "ood_test" in sets else 0
    fig.update_layout(
        title={"text": f"2D loss landscape · {run_title(keys)}", "y": 0.98, "yanchor": "top"}, showlegend=False, height=600,
        margin={"l": 10, "r": 10, "t": 130, "b": 40},
        updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "active": active, "x": 0.06, "y": 1.2,
                      "xanchor": "left", "yanchor": "top", "showactive": True}],
        annotations=[*fig.layout.annotations, {"text": "set:", "x": 0.0, "y": 1.18, "xref": "paper", "yref": "paper",
                                               "showarrow": False, "xanchor": "left", "yanchor": "top"}],
        scene={"xaxis_title": "α (d1)", "yaxis_title": "β (d2)", "zaxis_title": "log10 MAE", "zaxis": {"range": [low, max(high, low + 1e-6)]}},
        xaxis={"title": "α along d1 (filter-normalised)"}, yaxis={"title": "β along d2"})
    return json.loads(fig.to_json())


def _parity_view(predictions: pd.DataFrame, materials: pd.DataFrame, keys: dict, seed: int = 0) -> dict:
    """Predicted against DFT values per set, each crystal with its id, formula and error on hover (the training
    set subsampled to PARITY_TRAIN_POINTS crystals)."""
    import plotly.graph_objects as go

    frame = predictions.join(materials, on="id")
    frame["error"] = frame["y_pred"] - frame["y_true"]
    unit = units(keys["target"])
    fig = go.Figure()
    for set_name in SET_LABELS:
        subset = frame[frame["set"] == set_name]
        if subset.empty:
            continue
        label = SET_LABELS[set_name]
        if set_name == "train" and len(subset) > PARITY_TRAIN_POINTS:
            label += f" ({PARITY_TRAIN_POINTS} of {len(subset)} shown)"
            subset = subset.sample(PARITY_TRAIN_POINTS, random_state=seed)
        mae = float(subset["error"].abs().mean())
        fig.add_trace(go.Scattergl(
            x=subset["y_true"], y=subset["y_pred"], mode="markers", name=f"{label}, MAE {mae:.3f}",
            marker={"size": 5, "color": SET_COLOURS[set_name], "opacity": 0.7},
            customdata=np.stack([subset["id"].astype(str), subset["formula"].astype(str), subset["error"].round(4)], axis=1),
            hovertemplate="%{customdata[0]} %{customdata[1]}<br>DFT %{x:.3f}, predicted %{y:.3f}<br>error %{customdata[2]} "
                          + unit + f"<extra>{SET_LABELS[set_name]}</extra>",
            visible=True if set_name in ("id_test", "ood_test") else "legendonly"))
    low = float(frame[["y_true", "y_pred"]].min().min())
    high = float(frame[["y_true", "y_pred"]].max().max())
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", line={"dash": "dash", "color": "grey"}, name="y = x",
                             hoverinfo="skip"))
    name = str(keys["target"]).replace("_", " ")
    fig.update_layout(title=f"Parity · {run_title(keys)} (click a legend entry to show or hide a set)", height=560,
                      xaxis_title=f"DFT {name} ({unit})", yaxis_title=f"predicted {name} ({unit})")
    return json.loads(fig.to_json())


def _knob_view(responses: dict[str, pd.DataFrame], summaries: dict[str, pd.DataFrame], keys: dict) -> dict:
    """Knob (decoder sweep) and linear-intervention response curves of one omission beside its control: the mean
    contribution of the swept atoms per attribute value, one panel per attribute."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    attributes = list(dict.fromkeys(a for frame in responses.values() for a in frame["attribute"]))
    columns = min(3, max(1, len(attributes)))
    rows = int(np.ceil(len(attributes) / columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=attributes, horizontal_spacing=0.07, vertical_spacing=0.12)
    dashes = {0: "solid", 1: "dot"}
    for s, (split, frame) in enumerate(responses.items()):
        summary = summaries.get(split, pd.DataFrame())
        mean = (frame[frame["atoms"] == "all"].groupby(["set", "attribute", "step"], sort=True)
                .agg(value=("value", "first"), knob=("contribution", "mean"), intervention=("concept_contribution", "mean")).reset_index())
        for a, attribute in enumerate(attributes):
            row, col = a // columns + 1, a % columns + 1
            for set_name in ("id_test", "ood_test"):
                curve = mean[(mean["set"] == set_name) & (mean["attribute"] == attribute)]
                if curve.empty:
                    continue
                works = summary[(summary.get("set") == set_name) & (summary.get("attribute") == attribute)] if not summary.empty else summary
                fidelity = float(works["fidelity"].iloc[0]) if len(works) else float("nan")
                for kind, dash in (("knob", dashes[s % 2]), ("intervention", "dash" if s % 2 == 0 else "dashdot")):
                    fig.add_trace(go.Scatter(
                        x=curve["value"], y=curve[kind], mode="lines", line={"color": SET_COLOURS[set_name], "dash": dash,
                                                                            "width": 2 if kind == "knob" else 1},
                        name=f"{split} · {SET_LABELS[set_name]} · {kind}", legendgroup=f"{split}{set_name}{kind}", showlegend=a == 0,
                        hovertemplate=f"{split}, {SET_LABELS[set_name]}, {kind}<br>{attribute} = %{{x:.3g}}<br>mean contribution %{{y:.4g}}"
                                      f"<br>knob fidelity R² {fidelity:.2f}<extra></extra>"), row=row, col=col)
    fig.update_layout(title=f"Knob and intervention responses · {run_title(keys)} (omission solid/dashed, control dotted/dash-dot)",
                      height=max(420, 300 * rows), legend={"font": {"size": 10}})
    return json.loads(fig.to_json())


def _atlas_view(atlas: pd.DataFrame) -> dict:
    """The sweep's omissions on the periodic table, coloured by held-out error over the control's (log2), with its
    interval and call where the atlas has them and n on hover; a menu switches between targets and models."""
    import plotly.graph_objects as go
    from pymatgen.core.periodic_table import Element

    fig = go.Figure()
    pairs = list(atlas.groupby(["target", "model"], sort=True).groups)
    for k, (target, model) in enumerate(pairs):
        group = atlas[(atlas["target"] == target) & (atlas["model"] == model)].dropna(subset=["held_out"])
        places = [Element(str(e)) for e in group["held_out"]]
        x = [p.group if p.block != "f" else 3 + (p.Z - 57 if p.Z < 90 else p.Z - 89) for p in places]
        y = [p.row + (2.5 if p.block == "f" else 0) for p in places]
        ratio = group["ood_over_control"].astype(float)
        hover = []
        for record, r in zip(group.to_dict("records"), ratio):
            text = f"{record['held_out']} held out: held-out / control {r:.2f}"
            if "ood_over_control_low" in record:
                text += f" ({record['ood_over_control_low']:.2f}–{record['ood_over_control_high']:.2f})"
            text += f"<br>held-out MAE {_fmt(record.get('ood_mae'))}, control's {_fmt(record.get('control_ood_mae'))}"
            text += f"<br>n held-out {record.get('n_ood')}, seeds {record.get('seeds')}"
            if "call" in record:
                text += f"<br>call: {record['call']}"
            hover.append(text)
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers+text", text=[str(e) for e in group["held_out"]], visible=k == 0,
                                 marker={"symbol": "square", "size": 30, "color": np.log2(ratio.clip(lower=1e-3)), "colorscale": "RdBu_r",
                                         "cmid": 0, "colorbar": {"title": "log2 held-out / control"}},
                                 hovertext=hover, hoverinfo="text", name=f"{target} {model_name(model)}"))
    buttons = [{"label": f"{t.replace('_', ' ')} · {model_name(m)}", "method": "update",
                "args": [{"visible": [i == k for i in range(len(pairs))]}]} for k, (t, m) in enumerate(pairs)]
    fig.update_layout(title="Atlas: held-out error over the size-matched control's, per element held out", height=560,
                      updatemenus=[{"buttons": buttons, "x": 0, "y": 1.12, "xanchor": "left"}],
                      xaxis={"title": "group", "dtick": 1, "range": [0.5, 18.5]},
                      yaxis={"title": "period", "autorange": "reversed", "dtick": 1})
    return json.loads(fig.to_json())


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 8px; font-size: 14px; }}
#picker {{ font-size: 14px; padding: 3px; max-width: 100%; }}
#plot {{ width: 100%; min-height: 540px; }}
</style>
<script>{plotly}</script>
</head><body>
<label for="picker"><b>{title}</b> · view: </label>
<select id="picker">{options}</select>
<span id="note"></span>
<div id="plot"></div>
<script type="application/json" id="views">{views}</script>
<script>
const views = JSON.parse(document.getElementById("views").textContent);
const picker = document.getElementById("picker");
function show(name) {{
  const view = views[name];
  Plotly.react("plot", view.data, view.layout, {{responsive: true, displaylogo: false}});
}}
picker.addEventListener("change", () => show(picker.value));
show(picker.value);
</script>
</body></html>
"""


def interactive_page(views: dict[str, dict], groups: dict[str, list[str]], title: str, out_html) -> None:
    """One self-contained page: Plotly's JavaScript embedded once, every view's figure as JSON, a menu to pick one."""
    from plotly.offline import get_plotlyjs

    if not views:
        raise MatprobeError(f"{out_html}: no interactive view to write")
    options = "".join(f'<optgroup label="{html.escape(group)}">'
                      + "".join(f'<option value="{html.escape(name)}">{html.escape(name)}</option>' for name in names)
                      + "</optgroup>" for group, names in groups.items() if names)
    # '</' inside the JSON would end the script element early
    payload = json.dumps(views, separators=(",", ":")).replace("</", "<\\/")
    page = PAGE.format(title=html.escape(title), plotly=get_plotlyjs(), options=options, views=payload)
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")


def interactive_views(dataset: str, landscape_runs: list[dict], grid_paths: list, parity_runs: list[dict], prediction_paths: list,
                      materials_path, knob_runs: list[dict], knob_response_paths: list, knob_summary_paths: list, out_html,
                      atlas_path=None) -> list[str]:
    """A dataset's interactive page: each analysed run's 2D landscape, each model's parity plot, the knob and
    intervention responses of each omission beside its control (knob_runs lists omissions and controls; a control
    is drawn with its omission), and a sweep's atlas. Returns the names of the views."""
    views, groups = {}, {"2D loss landscapes": [], "Parity": [], "Knob and intervention responses": [], "Atlas": []}
    for keys, path in zip(landscape_runs, grid_paths):
        name = f"landscape · {run_title(keys)}"
        views[name] = _landscape_view(pd.read_parquet(path), keys)
        groups["2D loss landscapes"].append(name)
    materials = pd.read_parquet(materials_path, columns=["id", "reduced_formula"]).rename(columns={"reduced_formula": "formula"}).set_index("id")
    for keys, path in zip(parity_runs, prediction_paths):
        name = f"parity · {run_title(keys)}"
        views[name] = _parity_view(pd.read_parquet(path, columns=["id", "set", "y_true", "y_pred"]), materials, keys)
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
        name = f"knobs · {run_title(keys)}"
        views[name] = _knob_view(responses, summaries, keys)
        groups["Knob and intervention responses"].append(name)
    if atlas_path is not None:
        atlas = pd.read_parquet(atlas_path)
        if not atlas.empty:
            views["atlas"] = _atlas_view(atlas)
            groups["Atlas"].append("atlas")
    interactive_page(views, groups, f"Interactive views of {dataset}", out_html)
    return list(views)
