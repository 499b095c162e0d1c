"""The whole workflow through snakemake on a tiny dataset the test writes, then the HTML report."""

import subprocess

import pandas as pd
import pytest

from matprobe.layout import RUN_FILES


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the shared tiny run is made inside this test's time when it comes first
def test_whole_workflow_on_a_tiny_dataset_and_its_report(tiny_run):
    # tiny_run (conftest) has run the whole workflow and made its report; the run imports a copy of the package, so
    # that the test can edit a plotting function below.
    workdir, package, env, snakemake = tiny_run.workdir, tiny_run.package, tiny_run.env, tiny_run.snakemake
    plan = snakemake("-n")
    assert plan.returncode == 0 and "Nothing to be done" in plan.stdout + plan.stderr  # every declared output exists
    # how the jobs run (threads, device, deterministic kernels, compilation, points per pass) is not what they compute:
    # changing it re-plans nothing (matprobe.config.RUNTIME_KEYS stay out of the rules' params)
    (workdir / "runtime.yaml").write_text("training: {threads: 2, device: cpu, deterministic: false}\n"
                                          "landscape: {threads: 2, device: cpu, compile: always, points_per_pass: 4}\n")
    plan = subprocess.run(["snakemake", "-n", "--configfile", "tiny.yaml", "runtime.yaml"], cwd=workdir, capture_output=True,
                          text=True, timeout=600, env=env)
    assert plan.returncode == 0 and "Nothing to be done" in plan.stdout + plan.stderr, (plan.stdout + plan.stderr)[-3000:]
    study = workdir / "results/studies/default"
    for model in ("cgcnn", "schnet"):
        for split in ("omit-Fe", "omit-Fe-control"):
            base = f"tiny/formation_energy_per_atom/{split}/{model}/seed0"
            assert (study / "models" / base / "model.pt").exists()
            assert (study / "landscape" / base / "grid.parquet").exists()
            assert (study / "attribution" / base / "atoms.parquet").exists()
            assert (study / "figures" / base / "parity.png").stat().st_size > 10_000
            # every file the layout names for a run is there: the rules declared it and the package wrote it under that name
            for stage, files in RUN_FILES.items():
                names = [name for name in files if not (stage == "probe_maps" and name == "comparison" and split.endswith("control"))]
                missing = [files[name] for name in names if not (study / stage / base / files[name]).exists()]
                assert not missing, (stage, base, missing)
    grid = pd.read_parquet(study / "landscape/tiny/formation_energy_per_atom/omit-Fe/cgcnn/seed0/grid.parquet")
    assert len(grid) == (5 + 25) * 4
    runs = pd.read_parquet(study / "summary/runs.parquet")
    assert len(runs) == 4 and {"train.ood_test.mae", "landscape.sets.ood_test.epsilon_sharpness"} <= set(runs.columns)
    headline = pd.read_csv(study / "summary/tiny/headline.csv")
    assert len(headline) == 4  # split x model, seeds pooled
    row = runs[(runs["split"] == "omit-Fe") & (runs["model"] == "cgcnn")].iloc[0]
    cgcnn = headline[(headline["split"] == "omit-Fe") & (headline["model"] == "cgcnn")].iloc[0]
    assert cgcnn["ood_over_id"] == pytest.approx(row["train.ood_test.mae"] / row["train.id_test.mae"])
    assert "| formation_energy_per_atom | omit-Fe | cgcnn |" in (study / "summary/tiny/headline.md").read_text()
    worst = pd.read_csv(study / "summary/tiny/worst_predictions.csv")
    assert set(worst["set"]) == {"train", "id_test", "ood_test"} and worst["reduced_formula"].notna().all()
    assert (workdir / "results/report.html").stat().st_size > 100_000
    # editing a plotting function of one family (matprobe/figures/landscapes.py, an input of that family's figure
    # jobs) re-runs that family's figures only
    plotting = package / "matprobe" / "figures" / "landscapes.py"
    plotting.write_text(plotting.read_text() + "\n# edited\n")
    plan = snakemake("-n", "--quiet", "rules")
    planned = set((plan.stdout + plan.stderr).split())
    assert {"landscape_figures", "landscape_overview_figures"} <= planned, planned
    assert not {"train_model", "landscape_chunk", "attribute_model", "headline_table", "parity_figure", "training_figures",
                "attribution_figures", "topology_figures"} & planned, planned
    # the style every family shares re-runs them all
    style = package / "matprobe" / "figures" / "style.py"
    style.write_text(style.read_text() + "\n# edited\n")
    plan = snakemake("-n", "--quiet", "rules")
    planned = set((plan.stdout + plan.stderr).split())
    assert {"parity_figure", "training_figures", "landscape_figures", "attribution_figures", "topology_figures"} <= planned
    assert not {"train_model", "landscape_chunk", "attribute_model", "headline_table"} & planned
    # so does editing a workflow script (snakemake's own code trigger)
    script = workdir / "workflow_scripts" / "attribution_figures.py"
    script.write_text(script.read_text() + "\n# touched\n")
    plan = snakemake("-n", "--quiet", "rules")
    planned = set((plan.stdout + plan.stderr).split())
    assert "attribution_figures" in planned and not {"train_model", "landscape_chunk"} & planned
    # reading flatness off the stored grids differently re-runs the metrics jobs, not the grids or Hessians
    (workdir / "flatness.yaml").write_text("landscape: {flatness: {divergence_radius: 0.7}}\n")
    plan = subprocess.run(["snakemake", "-n", "--quiet", "rules", "--configfile", "tiny.yaml", "flatness.yaml"], cwd=workdir,
                          capture_output=True, text=True, timeout=600)
    planned = plan.stdout + plan.stderr
    assert plan.returncode == 0, planned[-3000:]
    assert "landscape_metrics" in planned
    assert not {"landscape_directions", "landscape_chunk", "landscape_hessian", "train_model"} & set(planned.split())
    # a second study of the same dataset (longer training, its own name) shares data, graphs and splits and never
    # trains over the first one's models: everything it plans lives under its own name
    (workdir / "longer.yaml").write_text("study: longer\ntraining: {epochs: 6}\n")
    plan = subprocess.run(["snakemake", "-n", "--configfile", "tiny.yaml", "longer.yaml"], cwd=workdir, capture_output=True,
                          text=True, timeout=600, env=env)
    assert plan.returncode == 0, plan.stderr[-3000:]
    outputs = [out for line in plan.stdout.splitlines() if line.strip().startswith("output: ")
               for out in line.split(": ", 1)[1].split(", ")]
    assert any("results/studies/longer/models/" in out for out in outputs)
    assert all(out.startswith("results/studies/longer/") for out in outputs), [o for o in outputs if "longer" not in o][:5]
    planned = set(plan.stdout.split())
    assert not {"normalise_dataset", "build_graphs", "make_split", "split_stats", "topology"} & planned
