"""The workflow driven through snakemake itself, in a copy of the workflow files."""

import hashlib
import json
import os
import subprocess
import time

import pandas as pd
import pytest
import yaml

from conftest import copy_workflow
from matprobe.inputs.sources import EMBEDDED_FILE


def snakemake(workdir, *args, timeout=600):
    result = subprocess.run(["snakemake", *args], cwd=workdir, capture_output=True, text=True, timeout=timeout)
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_dry_run_plans_every_stage(workdir):
    result = snakemake(workdir, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in ("normalise_dataset", "build_graphs", "make_split", "split_stats"):
        assert rule in result.stdout


@pytest.mark.parametrize("configfile, has_atlas", [("config/config.yaml", False), ("config/atlas-demo.yaml", True)])
def test_the_default_target_builds_the_atlas_where_a_split_sweeps(workdir, configfile, has_atlas):
    # README: `snakemake` builds every stage, and the atlas where a split sweeps over the periodic table
    result = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("atlas_tables" in result.stdout.split()) == has_atlas


def test_headline_needs_training_alone(workdir):
    result = snakemake(workdir, "headline", "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    planned = set(result.stdout.split())
    assert {"train_model", "headline_table", "training_figures"} <= planned
    assert not {"landscape_directions", "landscape_chunk", "landscape_hessian", "attribute_model", "topology"} & planned


@pytest.mark.parametrize("given_as", ["configfile", "command line"])
def test_analysis_seeds_limit_landscapes_and_attributions_not_training_or_parity(workdir, given_as):
    if given_as == "configfile":
        config = yaml.safe_load((workdir / "config/config.yaml").read_text())
        config.update(seeds=[0, 1, 2], analysis_seeds=[1])
        (workdir / "two_of_three.yaml").write_text(yaml.safe_dump(config))
        result = snakemake(workdir, "-n", "--configfile", "two_of_three.yaml")
    else:  # Snakemake hands these over as ['0', '1', '2'] and ['1']; the config validation reads them as numbers
        result = snakemake(workdir, "-n", "--config", "seeds=[0, 1, 2]", "analysis_seeds=[1]")
    assert result.returncode == 0, result.stderr[-3000:]
    planned = [out for line in result.stdout.splitlines() if line.strip().startswith("output: ")
               for out in line.split(": ", 1)[1].split(", ")]
    trained = [out for out in planned if "/model.pt" in out]
    parity = [out for out in planned if "/parity." in out]
    study = "results/studies/default"
    probed = [out for out in planned if f"{study}/landscape/" in out or f"{study}/attribution/" in out
              or (f"{study}/figures/demo/" in out and out not in parity)]
    every_seed = {"seed0", "seed1", "seed2"}
    assert {f"seed{s}" for out in trained for s in range(3) if f"/seed{s}/" in out} == every_seed
    assert {f"seed{s}" for out in parity for s in range(3) if f"/seed{s}/" in out} == every_seed
    assert probed and all("/seed" not in out or "/seed1/" in out for out in probed)
    assert any("/seed1/" in out for out in probed if f"{study}/landscape/" in out)
    assert any("/seed1/" in out for out in probed if f"{study}/attribution/" in out)


@pytest.mark.slow
def test_data_stage_on_the_default_config_then_nothing_to_do(workdir):
    result = snakemake(workdir, "--cores", "2", "data")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_parquet(workdir / "results/data/demo/materials.parquet")
    assert len(table) >= 3900 and table["id"].is_unique
    summary = json.loads((workdir / "results/data/demo/summary.json").read_text())
    assert summary["accepted"] + summary["rejected"] == summary["read"] == 3938
    # the embedded table, hashed for provenance and keyed by no machine's path
    assert summary["input_sha256"] == {"embedded:flla_2015.parquet": hashlib.sha256(EMBEDDED_FILE.read_bytes()).hexdigest()}
    assert (workdir / "logs/data/demo/normalise.log").exists() and (workdir / "benchmarks/data/demo/normalise.tsv").exists()
    again = snakemake(workdir, "--cores", "2", "data")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # The same dataset copied again (newer date, same bytes; 1.03 MB, above Snakemake's 1 MB default checksum
    # limit): the profile's larger limit lets snakemake compare checksums instead of re-running the data stage.
    embedded = EMBEDDED_FILE
    stat = embedded.stat()
    assert stat.st_size > 1_000_000
    try:
        os.utime(embedded, (stat.st_atime, time.time() + 60))
        copied = snakemake(workdir, "-n", "data")
    finally:
        os.utime(embedded, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert copied.returncode == 0 and "Nothing to be done" in copied.stdout + copied.stderr, copied.stdout[-2000:]


@pytest.mark.slow
def test_graphs_and_splits_on_the_default_config(workdir, tmp_path):
    result = snakemake(workdir, "--cores", "2", "graphs", "splits")
    assert result.returncode == 0, result.stderr[-3000:]
    stats = pd.read_parquet(workdir / "results/splits/demo/seed0-val0.1-test0.1/stats.parquet")
    assert set(stats["split"]) == {"omit-Fe", "omit-Fe-control", "omit-O", "omit-O-control"}
    graph_summary = json.loads((workdir / "results/graphs/demo/cutoff8-nn12-v2/summary.json").read_text())
    assert graph_summary["graphs"] == 3938 and graph_summary["mean_edges_per_atom"] == 12.0
    # another cutoff is another cache: the old graphs stay, new ones are planned
    other = tmp_path / "cutoff6.yaml"
    other.write_text("graph:\n  cutoff: 6.0\n")
    plan = snakemake(workdir, "-n", "graphs", "--configfile", str(other))
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "results/graphs/demo/cutoff6-nn12-v2/graphs.pt" in plan.stdout + plan.stderr


def test_bad_dataset_fails_with_one_line_and_keeps_earlier_results(workdir, tmp_path):
    demo = workdir / "results/data/demo/materials.parquet"
    before = demo.stat().st_mtime if demo.exists() else None
    config = tmp_path / "bad.yaml"
    config.write_text(f"datasets:\n  broken:\n    source: cgcnn_dir\n    path: {tmp_path}/nowhere.tar.gz\n    columns: [e]\ntargets: [e]\n")
    result = snakemake(workdir, "data", "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    assert "Missing input files" in result.stderr and f"{tmp_path}/nowhere.tar.gz" in result.stderr
    (tmp_path / "empty").mkdir()
    config.write_text(f"datasets:\n  broken:\n    source: cgcnn_dir\n    path: {tmp_path}/empty\n    columns: [e]\ntargets: [e]\n")
    result = snakemake(workdir, "data", "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    assert f"matprobe: error: {tmp_path}/empty: no id_prop.csv found" in result.stderr
    assert not (workdir / "results/data/broken/materials.parquet").exists()
    if before is not None:
        assert demo.stat().st_mtime == before


def test_download_source_through_the_workflow(workdir, tmp_path, crystals):
    """A JARVIS-style release served on 127.0.0.1: downloaded by its local rule, recorded, normalised."""
    import functools
    import http.server
    import threading
    import zipfile

    served = tmp_path / "served"
    served.mkdir()
    entries = [
        {
            "jid": f"JVASP-{i}",
            "atoms": {
                "lattice_mat": s.lattice.matrix.tolist(),
                "coords": s.frac_coords.tolist(),
                "elements": [site.specie.symbol for site in s],
                "cartesian": False,
            },
            "formation_energy_peratom": -0.5 * i,
            "optb88vdw_bandgap": "na",
            "mbj_bandgap": 1.0,
        }
        for i, s in enumerate(crystals.values())
    ]
    with zipfile.ZipFile(served / "release.zip", "w") as zf:
        zf.writestr("jdft_3d-8-18-2021.json", json.dumps(entries))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "jarvis.yaml"
        config.write_text(
            "datasets:\n  jv:\n    source: jarvis_dft_3d\n"
            f"    url: http://127.0.0.1:{httpd.server_address[1]}/release.zip\n"
            f"data:\n  download_dir: {tmp_path}/downloads\n"
        )
        result = snakemake(workdir, "data", "--cores", "1", "--configfile", str(config))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "downloads" / "jdft_3d-8-18-2021.json.zip.sha256").exists()
    table = pd.read_parquet(workdir / "results/data/jv/materials.parquet")
    assert len(table) == 5 and table["band_gap"].isna().all() and table["band_gap_mbj"].notna().all()
