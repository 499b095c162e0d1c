import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from matprobe.figures import style, training

matplotlib.use("Agg")


def _history(root, target, split, loss):
    path = root / f"{target}-{split}.parquet"
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [loss] * 3, "val_mae": [loss] * 3}).to_parquet(path)
    return {"dataset": "mp36k", "target": target, "split": split, "model": "cgcnn", "seed": 0}, path


def test_training_curves_give_a_split_one_colour_in_every_panel(tmp_path, monkeypatch):
    # the band-gap histories list omit-O first, the formation-energy ones omit-Fe first: colours must not follow that
    losses = {"omit-Fe": 1.0, "omit-Fe-control": 2.0, "omit-O": 3.0, "omit-O-control": 4.0}
    runs = [_history(tmp_path, "band_gap", split, losses[split]) for split in ("omit-O", "omit-O-control", "omit-Fe", "omit-Fe-control")]
    runs += [_history(tmp_path, "formation_energy_per_atom", split, losses[split]) for split in losses]
    drawn = []
    monkeypatch.setattr(training, "save", lambda fig, path: drawn.append(fig))
    training.training_curves([key for key, _ in runs], [path for _, path in runs], tmp_path / "curves.png")
    (fig,) = drawn
    colour_of_loss = [{line.get_ydata()[0]: matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines() if len(line.get_ydata()) == 3}
                      for ax in fig.axes]
    assert all(set(panel) == set(losses.values()) for panel in colour_of_loss)
    assert all(panel == colour_of_loss[0] for panel in colour_of_loss)
    assert len(set(colour_of_loss[0].values())) == 4
    assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()][1:5] == list(losses)  # omission, then its control
    assert fig.axes[0].get_title().startswith("band gap:")


def test_split_order_puts_each_control_after_its_omission():
    assert style.split_order(["random", "omit-O-control", "omit-Fe", "omit-O", "omit-Fe-control"]) == [
        "omit-Fe", "omit-Fe-control", "omit-O", "omit-O-control", "random"]


def test_the_four_sets_have_colours_told_apart_at_a_glance():
    # train/val/ID/OOD share every line and violin plot; the palette's orange beside vermilion (RGB distance 0.20) was not
    colours = [np.array(matplotlib.colors.to_rgb(colour)) for colour in style.set_colors().values()]
    closest = min(np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1:])
    assert len(colours) == 4 and closest > 0.25


def _headline_rows():
    rows = []
    for split, ood in (("omit-Fe", 0.2), ("omit-Fe-control", 0.1), ("omit-O", 1.2), ("omit-O-control", 0.3)):
        for model, scale in (("cgcnn", 1.0), ("schnet", 2.0)):
            rows.append({"dataset": "demo", "target": "formation_energy_per_atom", "split": split, "model": model,
                         "id_mae": 0.15 * scale, "ood_mae": ood * scale, "ood_over_id": ood / 0.15, "seeds": 1, "n_id": 10, "n_ood": 5})
    return pd.DataFrame(rows)


def test_findings_put_each_omission_beside_its_control_with_their_ratio(tmp_path):
    from matprobe.report.views import findings_html, findings_table

    table = findings_table(_headline_rows())
    assert list(zip(table["split"], table["model"])) == [("omit-Fe", "cgcnn"), ("omit-Fe", "schnet"), ("omit-O", "cgcnn"), ("omit-O", "schnet")]
    assert table["ood_over_control"].round(6).tolist() == [2.0, 2.0, 4.0, 4.0]
    assert table["control_ood_mae"].round(6).tolist() == [0.1, 0.2, 0.3, 0.6]
    _headline_rows().to_csv(tmp_path / "headline.csv", index=False)
    findings_html([tmp_path / "headline.csv"], tmp_path / "findings.html")
    page = (tmp_path / "findings.html").read_text()
    assert page.count("<tr>") == 5 and 'id="matprobe-findings"' in page  # a header and four rows
    assert "costs most in <b>omit-O</b> (median 4.0×" in page and "least in <b>omit-Fe</b> (2.0×)" in page
    assert "CGCNN 1.200 against its control's 0.300 eV/atom (4.0×)" in page


def test_findings_refuse_a_headline_table_without_errors(tmp_path):
    from matprobe import MatprobeError
    from matprobe.report.views import findings_table

    with pytest.raises(MatprobeError, match="missing columns.*ood_mae"):
        findings_table(_headline_rows().drop(columns="ood_mae"))


def _grid():
    alpha = np.linspace(-1, 1, 5)
    rows = [{"grid": "2d", "set": s, "alpha": a, "beta": b, "mae": (1 + k) * (0.1 + a * a + b * b)}
            for k, s in enumerate(("train", "val", "id_test", "ood_test")) for a in alpha for b in alpha]
    rows += [{"grid": "1d", "set": "train", "alpha": a, "beta": 0.0, "mae": 0.1 + a * a} for a in alpha]
    return pd.DataFrame(rows)


def test_interactive_page_is_self_contained_small_and_carries_every_view(tmp_path):
    from matprobe.report.views import interactive_views

    keys = {"dataset": "demo", "target": "formation_energy_per_atom", "split": "omit-O", "model": "cgcnn", "seed": 0}
    _grid().to_parquet(tmp_path / "grid.parquet")
    ids = [f"mp-{i}" for i in range(12)]
    pd.DataFrame({"id": ids, "set": ["train"] * 4 + ["id_test"] * 4 + ["ood_test"] * 4, "y_true": np.arange(12.0),
                  "y_pred": np.arange(12.0) + 0.5}).to_parquet(tmp_path / "predictions.parquet")
    pd.DataFrame({"id": ids, "reduced_formula": [f"Fe{i}O" for i in range(12)]}).to_parquet(tmp_path / "materials.parquet")
    names = interactive_views("demo", [keys], [tmp_path / "grid.parquet"], [keys], [tmp_path / "predictions.parquet"],
                              tmp_path / "materials.parquet", [], [], [], tmp_path / "interactive.html")
    assert names == ["landscape · formation energy per atom · omit-O · CGCNN · seed 0", "parity · formation energy per atom · omit-O · CGCNN · seed 0"]
    page = (tmp_path / "interactive.html").read_text()
    # nothing fetched; small enough for the report's data: URL iframe (Chromium refuses data: URLs over 2 MB)
    assert "<script src" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "") and len(page) < 200_000
    views = json.loads(page.split('id="views">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    landscape = views[names[0]]
    assert list(landscape["sets"]) == ["train", "val", "ID test", "OOD test"] and landscape["active"] == "OOD test"
    assert landscape["alpha"] == [-1.0, -0.5, 0.0, 0.5, 1.0] and landscape["origin"] == [2, 2]
    ood = landscape["sets"]["OOD test"]
    assert ood["z"][2][2] == pytest.approx(np.log10(0.4), abs=1e-4)
    assert ood["z"][0][4] == pytest.approx(np.log10(4 * 2.1), abs=1e-4)  # beta -1 (row 0), alpha 1 (column 4)
    parity = views[names[1]]
    shown = [series for series in parity["series"] if series["visible"]]
    assert [series["name"].split(" (")[0] for series in shown] == ["ID test", "OOD test"]
    assert (shown[1]["id"][0], shown[1]["formula"][0], shown[1]["x"][0], shown[1]["y"][0]) == ("mp-8", "Fe8O", 8.0, 8.5)


def test_a_per_run_figure_names_its_run_above_everything_it_draws(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    fig.suptitle("what the figure shows")
    keys = {"dataset": "demo", "target": "band_gap", "split": "omit-O-control", "model": "schnet", "seed": 2}
    with style.naming_run(keys):
        style.save(fig, tmp_path / "figure.png")
    label = fig.texts[-1]
    assert label.get_text() == "band gap · omit-O-control · SchNet · seed 2"
    assert label.get_position()[1] > fig._suptitle.get_position()[1]
    fig, ax = plt.subplots()
    style.save(fig, tmp_path / "other.png")  # outside the block: no label
    assert not fig.texts


def test_knob_figure_draws_working_knobs_and_tables_the_failing_ones(tmp_path, monkeypatch):
    from matprobe.figures import knobs

    attributes = ["electronegativity", "coordination", "radius", "h1_total_persistence", "mean_bond_length"]
    paths = {}
    for split, fidelity in (("omit-O", 0.95), ("omit-O-control", 0.5)):
        check = {"attributes": attributes, "encoded_threshold": 0.3, "fidelity_goal": 0.8,
                 "encoded_r2": {"electronegativity": 0.9, "coordination": 0.9, "radius": 0.1, "h1_total_persistence": 0.9, "mean_bond_length": 0.9},
                 "fidelity_r2": {"electronegativity": 0.95, "coordination": 0.95, "radius": 0.9, "h1_total_persistence": fidelity,
                                 "mean_bond_length": 0.9},
                 # a knob that works by its own checks but turns the contribution against the crystal's shell stretch
                 "crystal": {"knobs": {"mean_bond_length": {"intervention": "shell_stretch", "verdict": "disagrees", "spearman": -0.21, "curves": 14},
                                       "coordination": {"intervention": "substitution", "verdict": "agrees", "spearman": 0.6, "curves": 14}}}}
        (tmp_path / f"{split}.json").write_text(json.dumps(check))
        rows = [{"set": s, "atoms": "all", "attribute": a, "value": v, "contribution": v * 0.1}
                for s in ("id_test", "ood_test") for a in attributes for v in (0.0, 1.0, 2.0)]
        pd.DataFrame(rows).to_parquet(tmp_path / f"{split}.parquet")
        paths[split] = (tmp_path / f"{split}.json", tmp_path / f"{split}.parquet")
    drawn = []
    monkeypatch.setattr(knobs, "save", lambda fig, path: drawn.append(fig))
    splits = list(paths)
    knobs.knob_responses(splits, [], [paths[s][1] for s in splits], [paths[s][0] for s in splits], "formation_energy_per_atom",
                         tmp_path / "knobs.png")
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title().split(" (")[0] for ax in panels] == ["electronegativity", "coordination"]
    assert all(len(ax.get_lines()) == 4 for ax in panels)  # ID and OOD of the omission and its control
    (table,) = [artist for ax in fig.axes for artist in ax.tables]
    cells = {(r, c): cell.get_text().get_text() for (r, c), cell in table.get_celld().items()}
    assert [cells[(r, 0)].split(" (")[0] for r in (1, 2, 3)] == ["radius", "h1 total persistence", "mean bond length"]
    assert cells[(1, 4)].startswith("the model's h does not encode it") and cells[(2, 1)] == "omit-O-control" and cells[(2, 3)] == "0.50"
    assert cells[(3, 4)] == "disagrees with the crystal's shell stretch (Spearman -0.21 over 14 edited atoms)"


def test_a_sweeps_atlas_reaches_the_findings_and_the_interactive_periodic_table(tmp_path):
    from matprobe.report.views import _atlas_view, findings_html

    atlas = pd.DataFrame({"dataset": "demo", "target": "formation_energy_per_atom", "model": "cgcnn",
                          "split": ["omit-O", "omit-Fe", "omit-La", "omit-group1"], "held_out": ["O", "Fe", "La", "group1"],
                          "ood_over_control": [4.0, 1.1, 2.0, 1.5], "ood_mae": [1.2, 0.2, 0.5, 0.3],
                          "control_ood_mae": [0.3, 0.18, 0.25, 0.2], "n_ood": [900, 120, 40, 300], "seeds": 1})
    atlas.to_parquet(tmp_path / "atlas.parquet")
    _headline_rows().to_csv(tmp_path / "headline.csv", index=False)
    findings_html([tmp_path / "headline.csv"], tmp_path / "findings.html", [tmp_path / "atlas.parquet"])
    page = (tmp_path / "findings.html").read_text()
    assert "CGCNN: 4 omissions; held-out error furthest above the control's: O (4.0×), La (2.0×), group1 (1.5×), Fe (1.1×)." in page
    view = _atlas_view(atlas)
    cells = {cell["symbol"]: cell for cell in view["panels"][0]["cells"]}
    assert set(cells) == {"O", "Fe", "La"}  # a group held out has no cell
    assert (cells["O"]["x"], cells["O"]["y"]) == (16, 2) and (cells["Fe"]["x"], cells["Fe"]["y"]) == (8, 4)
    assert (cells["La"]["x"], cells["La"]["y"]) == (3, 8)  # the lanthanides' row below the table
    assert cells["O"]["value"] == pytest.approx(2.0) and "n held-out 900" in cells["O"]["text"]
    # the atlas of matprobe.studies.atlas scores both models on the same crystals: the hover gives those errors and sizes
    paired = atlas.assign(paired_ood_mae=[1.1, 0.21, 0.5, 0.3], paired_control_mae=[0.28, 0.19, 0.25, 0.2],
                          n_paired=[490, 36, 12, 80], n_families=[443, 34, 11, 70], call="fails")
    text = {cell["symbol"]: cell["text"] for cell in _atlas_view(paired)["panels"][0]["cells"]}["O"]
    assert "MAE over the 490 paired crystals (443 families): 1.100, control's 0.280" in text and "call: fails" in text


def test_the_interactive_knob_view_leaves_out_failing_and_disagreeing_knobs():
    from matprobe.report.views import _knob_view

    keys = {"dataset": "demo", "target": "formation_energy_per_atom", "split": "omit-O", "model": "cgcnn", "seed": 0}
    knobs = ["coordination", "mean_bond_length", "h1_total_persistence"]
    responses = {split: pd.DataFrame([{"set": s, "atoms": "all", "attribute": a, "step": k, "value": float(k), "contribution": 0.1 * k,
                                       "concept_contribution": 0.05 * k} for s in ("id_test", "ood_test") for a in knobs for k in range(3)])
                 for split in ("omit-O", "omit-O-control")}
    verdicts = {"coordination": (True, "not judged"), "mean_bond_length": (True, "disagrees"), "h1_total_persistence": (False, "not judged")}
    summaries = {split: pd.DataFrame([{"set": s, "attribute": a, "fidelity": 0.9 if works else 0.4, "knob_works": works,
                                       "check_failed": "" if works else "fidelity R² 0.40 below its goal 0.8",
                                       "agrees_with_crystal": verdict} for s in ("id_test", "ood_test") for a, (works, verdict) in verdicts.items()])
                 for split in responses}
    view = _knob_view(responses, summaries, keys)
    assert [panel["title"] for panel in view["panels"]] == ["coordination"]
    assert "mean bond length: disagrees with the crystal's interventions in omit-O" in view["note"]
    assert "h1 total persistence: fidelity R² 0.40 below its goal 0.8 in omit-O" in view["note"]


# The stages that run a model (or need vesin's neighbour lists, which load torch); every other job starts without
# torch and PyG at import (their cost per job: bench/RESULTS.md).
TORCH_SCRIPTS = {"attribute_model", "build_graphs", "interventions", "knobs", "landscape_chunk", "landscape_directions",
                 "landscape_hessian", "landscape_sensitivity", "path_homology", "probe_map", "topology", "train_model"}


def test_figure_table_and_report_jobs_start_without_torch():
    import re
    import subprocess
    import sys
    from pathlib import Path

    every = sorted(Path(__file__).parents[1].glob("workflow_scripts/*.py"))
    assert TORCH_SCRIPTS <= {path.stem for path in every}  # no stale name
    scripts = [path for path in every if path.stem not in TORCH_SCRIPTS]
    # one interpreter imports each script's imports in turn and names the first after which torch is loaded
    program = ["import sys"]
    for script in scripts:
        program += [line for line in script.read_text().splitlines() if re.match(r"(from \S+ import|import )", line)]
        program.append(f"if 'torch' in sys.modules: sys.exit('{script.name} loads torch')")
    assert len(scripts) >= 20
    subprocess.run([sys.executable, "-c", "\n".join(program)], check=True)


@pytest.mark.parametrize("values, low", [({"O": -1.7, "Na": 0.9}, -1.7), ({"O": 1.0, "Na": 0.4}, -0.05), ({"O": np.nan}, -0.05)])
def test_a_bounded_measure_is_coloured_up_to_its_bound(values, low):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    style.periodic_table(values, [], "R²", "R²", ax, cmap="vlag_r", center=0.0, upper=1.0)
    bar = fig.axes[-1]
    assert bar.get_ylim() == pytest.approx((low, 1.0))  # not symmetric about 0: R² never exceeds 1
    assert bar.get_yscale() == "linear"
    plt.close(fig)
    with pytest.raises(ValueError, match="upper"):
        style.periodic_table(values, [], "R²", "R²", plt.subplots()[1], center=0.0, upper=0.0)
