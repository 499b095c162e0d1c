"""matprobe.studies.results reads a study's outputs into DataFrames by the layout the workflow writes them with."""

import json
import re

import pandas as pd
import pytest

from conftest import REPO
from matprobe import MatprobeError
from matprobe.layout import Layout, Run
from matprobe.studies.results import Results
from matprobe.studies.summary import summarise_runs

RUNS = [Run("demo", "formation_energy_per_atom", split, model, 0)
        for split in ("omit-O", "omit-O-control") for model in ("cgcnn", "schnet")]


@pytest.fixture()
def study(tmp_path):
    """The files of four runs where the workflow would write them, with values that tell the runs apart."""
    layout = Layout("default", "g", "s", "t", root=str(tmp_path / "results"))
    for k, run in enumerate(RUNS):
        models = layout.path(layout.run_dir("models"), run)
        models.mkdir(parents=True)
        (models / "metrics.json").write_text(json.dumps({"ood_test": {"mae": float(k)}}))
        pd.DataFrame({"id": ["a", "b"], "set": ["id_test", "ood_test"], "y_true": [0.0, 1.0], "y_pred": [0.1, 1.0 + k],
                      "elements": [["Na"], ["O"]]}).to_parquet(models / "predictions.parquet")
        landscape = layout.path(layout.run_dir("landscape"), run)
        landscape.mkdir(parents=True)
        pd.DataFrame({"grid": ["1d"], "alpha": [0.0], "beta": [0.0], "set": ["train"], "loss": [k], "mae": [k]}).to_parquet(
            landscape / "grid.parquet")
        (landscape / "metrics.json").write_text(json.dumps({"sets": {"train": {"loss_at_origin": k}, "ood_test": {"loss_at_origin": 2 * k}},
                                                            "divergence_id_test_ood_test": 0.5}))
        (landscape / "hessian.json").write_text(json.dumps({"sets": {"train": {"top_eigenvalue_mean": 3.0, "density": {"grid": []}}}}))
        attribution = layout.path(layout.run_dir("attribution"), run)
        attribution.mkdir(parents=True)
        pd.DataFrame({"id": ["b"], "set": ["ood_test"], "site": [0], "element": ["O"], "contribution": [-1.0 - k]}).to_parquet(
            attribution / "atoms.parquet")
        (attribution / "summary.json").write_text("{}")
    # a run still training (no metrics.json yet) is not listed
    layout.path(layout.run_dir("models"), Run("demo", "band_gap", "omit-O", "cgcnn", 0)).mkdir(parents=True)
    summary = tmp_path / "results/studies/default/summary"
    summary.mkdir(parents=True)
    # the summary table as the workflow's summary job writes it from these files
    files = {stage: [layout.path(layout.run_dir(stage), run) / name for run in RUNS]
             for stage, name in (("models", "metrics.json"), ("landscape", "metrics.json"), ("attribution", "summary.json"))}
    keys = [run.keys() for run in RUNS]
    summarise_runs(keys, files["models"], keys, files["landscape"], files["attribution"], summary / "runs.parquet", summary / "runs.csv")
    return Results(tmp_path / "results")


def test_runs_lists_the_complete_runs(study):
    assert [Run.from_mapping(row) for row in study.runs().to_dict("records")] == sorted(RUNS)
    assert len(study.summary()) == 4


def test_tables_carry_their_run_keys_and_partial_keys_name_one_run(study):
    predictions = study.predictions(split="omit-O-control", model="schnet")
    assert predictions["y_pred"].tolist() == [0.1, 4.0] and (predictions["split"] == "omit-O-control").all()
    assert study.metrics(RUNS[1])["ood_test"]["mae"] == 1.0
    grids = pd.concat([study.landscape_grid(run) for run in RUNS])
    assert grids.groupby("model")["loss"].sum().to_dict() == {"cgcnn": 2, "schnet": 4}
    flatness = study.landscape_metrics(split="omit-O", model="schnet").set_index("set")
    assert flatness.loc["ood_test", "loss_at_origin"] == 2 and flatness.loc["train", "divergence_id_test_ood_test"] == 0.5
    assert study.hessian(RUNS[0]).loc[0, "top_eigenvalue_mean"] == 3.0
    assert study.attributions("atoms", split="omit-O", model="cgcnn")["contribution"].item() == -1.0


def test_an_ambiguous_or_unknown_key_is_one_line(study, tmp_path):
    with pytest.raises(MatprobeError, match="2 runs match {'split': 'omit-O'}"):
        study.predictions(split="omit-O")
    with pytest.raises(MatprobeError, match="0 runs match"):
        study.predictions(split="omit-Fe", model="cgcnn")
    # a miss lists the values there are, for the key that has none of them, in one line
    with pytest.raises(MatprobeError) as error:
        study.landscape_grid(target="formation_energy", split="omit-O", model="cgcnn", seed=0)
    assert "target 'formation_energy' is not one of ['formation_energy_per_atom']" in str(error.value)
    assert "\n" not in str(error.value) and "split 'omit-O' is not" not in str(error.value)  # only the key with no match
    with pytest.raises(MatprobeError, match=r"seed '7' is not one of \[0\]; model 'gnn' is not one of \['cgcnn', 'schnet'\]"):
        study.predictions(seed="7", model="gnn")
    with pytest.raises(MatprobeError, match="unknown run key"):
        study.predictions(splitt="omit-O")
    with pytest.raises(MatprobeError, match="unknown attribution table"):
        study.attributions("nope", RUNS[0])
    with pytest.raises(MatprobeError, match=r"studies/other: no such study \(found: \['default'\]\)"):
        Results(tmp_path / "results", study="other")


def test_the_notebook_example_in_docs_outputs_runs(study, monkeypatch, capsys):
    page = (REPO / "docs" / "outputs.md").read_text()
    example = re.search(r"## Reading results in a notebook.*?```python\n(.*?)```", page, re.S).group(1)
    monkeypatch.chdir(study.root.parent)
    exec(compile(example, "docs/outputs.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed == ["0.0", "-1.0"]  # the omit-O CGCNN run's OOD signed error, and its O atoms' mean contribution


def test_metrics_in_long_form_one_row_per_run_set_and_metric(study):
    long = study.metrics_long()
    assert list(long.columns[:9]) == ["dataset", "target", "split", "model", "seed", "split_kind", "stage", "set", "metric"]
    mae = long[(long["stage"] == "train") & (long["metric"] == "mae")]
    assert len(mae) == 4 and (mae["set"] == "ood_test").all()
    assert mae.set_index("split").loc["omit-O-control"].set_index("model")["value"].to_dict() == {"cgcnn": 2.0, "schnet": 3.0}
    origin = long[(long["metric"] == "loss_at_origin") & (long["split"] == "omit-O") & (long["model"] == "schnet")]
    assert origin.set_index("set")["value"].to_dict() == {"train": 1.0, "ood_test": 2.0}
    divergence = long[long["metric"] == "divergence_id_test_ood_test"]
    assert len(divergence) == 4 and divergence["set"].isna().all() and (divergence["value"] == 0.5).all()
    assert set(long["column"]) == {"train.ood_test.mae", "landscape.sets.train.loss_at_origin", "landscape.sets.ood_test.loss_at_origin",
                                   "landscape.divergence_id_test_ood_test"}
    # keys select runs; a key value no run has lists the ones there are
    assert set(study.metrics_long(split="omit-O")["split"]) == {"omit-O"}
    with pytest.raises(MatprobeError, match=r"split 'omit-Fe' is not one of \['omit-O', 'omit-O-control'\]"):
        study.metrics_long(split="omit-Fe")


def test_a_notebook_in_the_folder_above_a_checkout_named_matprobe_imports_the_package(tmp_path):
    """Python started one folder above a checkout named `matprobe` sees the checkout as a namespace package `matprobe`
    (its results/ folder as `matprobe.studies.results`); the editable install must put the real package first."""
    import shutil
    import subprocess
    import sys

    checkout = tmp_path / "parent" / "matprobe"
    checkout.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, checkout / name)
    shutil.copytree(REPO / "matprobe", checkout / "matprobe", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (checkout / "results" / "studies" / "default").mkdir(parents=True)  # the output folder that shadowed matprobe.studies.results
    # an environment of its own for this editable install, borrowing the rest (pip and setuptools too: seconds, offline)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True, timeout=300)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "-e", str(checkout)], capture_output=True, text=True, timeout=600)
    if install.returncode != 0:  # not the failure this test expects (pytest.fail is no AssertionError)
        pytest.fail(install.stderr[-2000:])
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "from matprobe.studies.results import Results; import matprobe; "
                            "print(matprobe.__file__)"], cwd=checkout.parent, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-1000:]
    assert probe.stdout.strip() == str(checkout / "matprobe" / "__init__.py")
