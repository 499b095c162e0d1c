"""Bad input fails early and in one line, and never pairs a label with the wrong crystal: one test per case of
docs/reliability.md (the numbers are the cases there)."""

import gzip
import hashlib
import http.server
import io
import json
import logging
import re
import shutil
import subprocess
import tarfile
import threading

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, copy_workflow
from matprobe import MatprobeError
from matprobe.config import validate_config
from matprobe.data import normalise_dataset
from matprobe.splits import make_split
from matprobe.train import load_trained_model


def normalise(tmp_path, spec, files=()):
    out = tmp_path / "out"
    return normalise_dataset("x", spec, list(files), out / "materials.parquet", out / "rejected.parquet", out / "summary.json")


def _add(tar, name, text):
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _archive(path, members: dict[str, str]):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            _add(tar, name, text)
    return path


def dry_run(tmp_path, config: str):
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "c.yaml").write_text(config)
    return subprocess.run(["snakemake", "-n", "--configfile", "c.yaml"], cwd=workdir, capture_output=True, text=True, timeout=300)


# ---- 1. archives: labels are read beside their structures only --------------------------------------------------


def test_1_an_archive_with_two_datasets_or_an_escaping_member_is_refused(tmp_path, crystals):
    nacl, feo = crystals["NaCl"].to(fmt="cif"), crystals["FeO"].to(fmt="cif")
    two = _archive(tmp_path / "two.tar.gz", {"a/id_prop.csv": "0,-1.0\n", "a/0.cif": nacl, "b/id_prop.csv": "0,-2.0\n", "b/0.cif": feo})
    with pytest.raises(MatprobeError, match=r"two.tar.gz: archive holds 2 id_prop.csv \(a/id_prop.csv, b/id_prop.csv\)"):
        normalise(tmp_path, {"source": "cgcnn_dir", "path": str(two), "columns": ["e"]})
    escaping = _archive(tmp_path / "esc.tar.gz", {"../id_prop.csv": "0,-1.0\n", "set/0.cif": nacl})
    with pytest.raises(MatprobeError, match=r"esc.tar.gz: member '../id_prop.csv' points outside the archive"):
        normalise(tmp_path, {"source": "cgcnn_dir", "path": str(escaping), "columns": ["e"]})


def test_1_structures_are_read_only_from_the_labels_folder(tmp_path, crystals):
    # set/ holds the labels and 0.cif; other/1.cif has the name of a label's crystal but belongs to another folder
    archive = _archive(tmp_path / "set.tar.gz", {"set/id_prop.csv": "0,-1.0\n1,-2.0\n", "set/0.cif": crystals["NaCl"].to(fmt="cif"),
                                                 "other/1.cif": crystals["FeO"].to(fmt="cif")})
    summary = normalise(tmp_path, {"source": "cgcnn_dir", "path": str(archive), "columns": ["e"]})
    table = pd.read_parquet(tmp_path / "out" / "materials.parquet")
    assert table["id"].tolist() == ["0"] and table["reduced_formula"].tolist() == ["NaCl"]
    assert summary["rejected_by_reason"] == {"unparsable": 1}  # 1.cif is missing from set/, not taken from other/


# ---- 2. what would crash after the costly part is found before it -----------------------------------------------


def test_2_a_split_with_an_empty_set_stops_at_the_split_job(tmp_path):
    materials = pd.DataFrame({"id": [f"m{i}" for i in range(12)], "elements": [["Na", "Cl"]] * 9 + [["Fe", "O"]] * 3})
    options = {"seed": 0, "val_fraction": 0.02, "id_test_fraction": 0.1, "min_ood": 1}
    with pytest.raises(MatprobeError, match=r"split omit-Fe: its val set is empty"):
        make_split(materials, "omit-Fe", [{"omit": "Fe"}], options)


def test_2_a_set_emptied_by_missing_values_stops_before_training(small, tmp_path):
    from matprobe.sets import load_split_data

    split = json.loads((small / "omit-O.json").read_text())
    materials = pd.read_parquet(small / "materials.parquet")
    materials.loc[materials["id"].isin(split["sets"]["id_test"]), "formation_energy_per_atom"] = float("nan")
    materials.to_parquet(tmp_path / "materials.parquet")
    with pytest.raises(MatprobeError, match=r"omit-O.json: no id_test crystal has both a graph and a formation_energy_per_atom value"):
        load_split_data(small / "graphs.pt", tmp_path / "materials.parquet", small / "omit-O.json", "formation_energy_per_atom")


@pytest.mark.parametrize("grid, expected", [({"grid_2d": {"points": 10}}, "landscape.grid_2d: 10 points over [-1.0, 1.0] miss"),
                                            ({"grid_1d": {"range": [0.1, 1.0]}}, "landscape.grid_1d: 41 points over [0.1, 1.0] miss")])
def test_2_a_grid_without_the_trained_weights_stops_at_start_up(grid, expected):
    with pytest.raises(MatprobeError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        validate_config({"landscape": grid})


# ---- 3. what the config alone can tell is found when the workflow starts (a dry run fails too) -----------------------


@pytest.mark.parametrize("config, expected", [
    ("targets: [band_gap]\n", "config: targets: dataset demo has no target 'band_gap'"),
    ("splits: [{omit: fe}]\n", "config: splits.0.omit: 'fe' is not an element symbol (did you mean 'Fe'?)"),
    ("splits: [{omit: [O, Xx]}]\n", "config: splits.0.omit: 'Xx' is not an element symbol"),
])
def test_3_targets_and_element_symbols_are_checked_by_a_dry_run(tmp_path, config, expected):
    result = dry_run(tmp_path, config)
    assert result.returncode != 0 and f"matprobe: {expected}" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# ---- 4. damaged files are one line naming them ----------------------------------------------------------------------


def test_4_a_truncated_archive_is_one_line(tmp_path, crystals):
    archive = _archive(tmp_path / "set.tar.gz", {"set/id_prop.csv": "0,-1.0\n", "set/0.cif": crystals["NaCl"].to(fmt="cif") * 40})
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(MatprobeError, match=r"cut.tar.gz: truncated or corrupt archive") as error:
        normalise(tmp_path, {"source": "cgcnn_dir", "path": str(truncated), "columns": ["e"]})
    assert "\n" not in str(error.value)


def test_4_a_damaged_model_file_is_one_line_naming_it(tiny_model, tmp_path):
    truncated = tmp_path / "model.pt"
    truncated.write_bytes(tiny_model.read_bytes()[:2000])
    with pytest.raises(MatprobeError, match=rf"{truncated}: not a readable matprobe model"):
        load_trained_model(truncated)
    # a file that loads but whose weights were altered fails its checksum
    record = torch.load(tiny_model, weights_only=True)
    first = next(iter(record["state_dict"]))
    record["state_dict"][first] = record["state_dict"][first] + 1.0
    torch.save(record, tmp_path / "altered.pt")
    with pytest.raises(MatprobeError, match="altered.pt: its weights do not match the checksum in its record"):
        load_trained_model(tmp_path / "altered.pt")


# ---- 5 and 7. downloads: checked wherever they came from; a checksum recorded only after a complete read ------------


class _NoLengthHandler(http.server.BaseHTTPRequestHandler):
    """Serves the file without a Content-Length; `cut` sends only its first half, as a dropped connection does."""

    body = b""
    cut = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2] if _NoLengthHandler.cut else self.body)
        self.close_connection = True


def test_5_a_truncated_first_download_is_never_recorded_or_trusted(tmp_path, crystals, monkeypatch):
    from matprobe import sources
    from matprobe.download import fetch

    entries = {"index": list(range(5)), "columns": ["structure", "e_form"],
               "data": [[s.as_dict(), -0.1 * i] for i, s in enumerate(crystals.values())]}
    _NoLengthHandler.body = gzip.compress(json.dumps(entries).encode())
    _NoLengthHandler.cut = True
    # unpinned, as a source without a pinned release is: only a recorded checksum can protect it
    monkeypatch.setattr(sources, "MP_2018", sources.RemoteFile(sources.MP_2018.url, sources.MP_2018.filename, None))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoLengthHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/mp.json.gz"
    dest = tmp_path / "downloads" / "mp_all_20181018.json.gz"
    spec = {"source": "mp_2018", "url": url, "targets": {"formation_energy_per_atom": "e_form"}}
    try:
        fetch(url, dest, backoff=0)  # the connection drops half-way; without a length, nothing can tell yet
        with pytest.raises(MatprobeError, match="mp_all_20181018.json.gz: cannot read JSON"):
            normalise(tmp_path, spec, [dest])
        assert not dest.with_name(dest.name + ".sha256").exists()  # the truncated file's checksum was not recorded
        dest.unlink()
        _NoLengthHandler.cut = False
        fetch(url, dest, backoff=0)
        summary = normalise(tmp_path, spec, [dest])  # the good file is not refused
        assert summary["accepted"] == 5
        assert dest.with_name(dest.name + ".sha256").read_text().strip() == hashlib.sha256(_NoLengthHandler.body).hexdigest()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_7_a_file_placed_in_the_download_folder_by_hand_is_checked(tmp_path):
    placed = tmp_path / "downloads" / "matbench_mp_e_form.json.gz"
    placed.parent.mkdir()
    placed.write_bytes(gzip.compress(b'{"index": [], "columns": [], "data": []}'))
    with pytest.raises(MatprobeError, match=r"matbench_mp_e_form.json.gz: sha256 .* does not match the pinned"):
        normalise(tmp_path, {"source": "matbench", "task": "matbench_mp_e_form"}, [placed])
    # a recorded checksum is enforced the same way, and the message says which record to delete
    (tmp_path / "downloads" / "table.json.gz.sha256").write_text("0" * 64 + "\n")
    shutil.copy(placed, tmp_path / "downloads" / "table.json.gz")
    from matprobe.download import verify

    with pytest.raises(MatprobeError, match=r"differs from the one recorded in .*table.json.gz.sha256 .*delete .*table.json.gz.sha256"):
        verify(tmp_path / "downloads" / "table.json.gz", None)


# ---- 6. values that are not numbers are counted, not lost without a word -------------------------------------------------


def test_6_target_values_that_are_not_numbers_are_counted_with_an_example(tmp_path, crystals, caplog):
    structures = [json.dumps(s.as_dict()) for s in crystals.values()]
    frame = pd.DataFrame({"id": list(crystals), "structure": structures, "e": ["-1.5", "abc", "inf", "1,5", "na"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    caplog.set_level(logging.WARNING, logger="matprobe.data")
    summary = normalise(tmp_path, {"source": "table", "path": str(tmp_path / "t.csv"), "targets": {"e": "e"}})
    assert summary["accepted"] == 5 and summary["targets"] == {"e": 1}
    refused = summary["target_values_refused"]["e"]
    assert refused["not_a_number"] == {"count": 2, "example": "FeO: 'abc'"} and refused["not_finite"]["count"] == 1
    assert "2 e values refused as not a number (e.g. FeO: 'abc')" in caplog.text


# ---- 8. every shipped config plans only jobs that can run --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(str(p.relative_to(REPO / "config")) for p in (REPO / "config").rglob("*.yaml")
                                        if p.name != "schema.yaml"))
def test_8_every_shipped_config_dry_runs(tmp_path, name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    workdir = copy_workflow(tmp_path / "wf")
    paths = [spec["path"] for spec in config.get("datasets", {}).values() if "path" in spec]
    if any(path.startswith("../shared/") for path in paths):
        from conftest import shared_dataset

        shared_dataset(REPO.parent / "shared" / "datasets" / "mp_cgcnn_36k.tar.gz")
        (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    for spec in config.get("datasets", {}).values():  # the examples' own files: a file of that name is enough to plan
        for key in ("path", "labels"):
            if key in spec and not spec[key].startswith("../"):
                target = workdir / spec[key]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("") if target.suffix else target.mkdir(exist_ok=True)
    result = subprocess.run(["snakemake", "-n", "--configfile", f"config/{name}"], cwd=workdir, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # each planned training job trains a target its dataset has (matbench.yaml once planned formation-energy models
    # for the band-gap task, which died after graph building)
    from matprobe.sources import resolve_targets

    if any("omit_each" in definition for definition in config.get("splits", [])):
        # a sweep's splits are known once the data stage (a checkpoint) has run: a dry run plans that stage first
        assert "checkpoint normalise_dataset" in result.stdout and "DAG of jobs will be updated" in result.stdout
        return
    planned = re.findall(r"rule train_model:.*?wildcards: dataset=([^,]+), target=([^,]+),", result.stdout, re.S)
    assert planned
    for dataset, target in planned:
        assert target in resolve_targets(config["datasets"][dataset]), (dataset, target)
