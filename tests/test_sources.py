"""Every data source on small inputs the tests write themselves."""

import gzip
import hashlib
import json
import tarfile
import zipfile

import pandas as pd
import pytest

from conftest import rocksalt
from matprobe import MatprobeError
from matprobe.inputs.data import normalise_dataset
from matprobe.inputs.sources import EMBEDDED_FILE, read_materials_project

BAD_CIF = "data_broken\n_cell_length_a 3.0\nloop_\n_atom_site_label\n"


def normalise(tmp_path, name, spec, files=()):
    out = tmp_path / "out" / name
    summary = normalise_dataset(
        name, spec, list(files), out / "materials.parquet", out / "rejected.parquet", out / "summary.json", threads=1
    )
    return pd.read_parquet(out / "materials.parquet"), pd.read_parquet(out / "rejected.parquet"), summary


def write_cgcnn_folder(root, crystals):
    root.mkdir(parents=True)
    lines, id_map = [], []
    for index, (name, structure) in enumerate(crystals.items()):
        (root / f"{index}.cif").write_text(structure.to(fmt="cif"))
        lines.append(f"{index},{-1.0 - index / 10},{index / 2},9.9")
        id_map.append(f"{index},mp-{100 + index}")
    # a broken CIF, a missing CIF and a duplicate line
    (root / "90.cif").write_text(BAD_CIF)
    lines += ["90,-0.5,0.1,0", "91,-0.5,0.1,0", "0,-9.0,9.0,0"]
    id_map += ["90,mp-990", "91,mp-991"]
    (root / "id_prop.csv").write_text("\n".join(lines) + "\n")
    (root / "material_id_hash.csv").write_text("\n".join(id_map) + "\n")
    return root


def test_cgcnn_folder_with_id_map(tmp_path, crystals):
    root = write_cgcnn_folder(tmp_path / "cg", crystals)
    spec = {"source": "cgcnn_dir", "path": str(root), "columns": ["formation_energy_per_atom", "band_gap"], "id_map": "material_id_hash.csv"}
    table, rejected, summary = normalise(tmp_path, "cg", spec)
    assert len(table) == 5 and table["id"].tolist()[0] == "mp-100"
    assert table.loc[table["id"] == "mp-100", "formation_energy_per_atom"].item() == -1.0  # first of a duplicate kept
    assert set(rejected["reason"]) == {"unparsable", "duplicate_id"}
    assert summary["read"] == 8 and summary["accepted"] + summary["rejected"] == 8
    assert summary["targets"] == {"formation_energy_per_atom": 5, "band_gap": 5}
    feo = table[table["reduced_formula"] == "FeO"].iloc[0]
    assert list(feo["elements"]) == ["Fe", "O"] and feo["nsites"] == 8 and feo["formula"] == "Fe4 O4"
    assert feo["volume"] == pytest.approx(crystals["FeO"].volume)


def test_cgcnn_tar_archive_equals_folder(tmp_path, crystals):
    root = write_cgcnn_folder(tmp_path / "cg" / "set", crystals)
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="set")
    spec = {"source": "cgcnn_dir", "columns": ["formation_energy_per_atom", "band_gap"]}
    from_folder, _, _ = normalise(tmp_path, "a", {**spec, "path": str(root)})
    from_tar, _, _ = normalise(tmp_path, "b", {**spec, "path": str(archive)})
    pd.testing.assert_frame_equal(from_folder, from_tar)
    assert from_tar["id"].tolist()[:2] == ["0", "1"]  # no id map: the CIF index is the id


def test_fatal_problems_name_the_file(tmp_path, crystals):
    with pytest.raises(MatprobeError, match="does not exist"):
        normalise(tmp_path, "x", {"source": "cgcnn_dir", "path": str(tmp_path / "nowhere"), "columns": ["e"]})
    root = write_cgcnn_folder(tmp_path / "cg", crystals)
    with pytest.raises(MatprobeError, match="datasets.x: source cgcnn_dir needs `columns`"):
        normalise(tmp_path, "x", {"source": "cgcnn_dir", "path": str(root)})
    table = tmp_path / "t.csv"
    pd.DataFrame({"id": ["a"], "structure": [BAD_CIF], "e": [1.0]}).to_csv(table, index=False)
    with pytest.raises(MatprobeError, match="nothing accepted"):
        normalise(tmp_path, "x", {"source": "table", "path": str(table), "targets": {"e": "e"}})
    with pytest.raises(MatprobeError, match=r"t.csv: target column\(s\) \['gap'\] not found"):
        normalise(tmp_path, "x", {"source": "table", "path": str(table), "targets": {"band_gap": "gap"}})


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_table_with_dict_cif_and_poscar_structures(tmp_path, crystals, suffix):
    frame = pd.DataFrame(
        {
            "material": ["dict", "cif", "poscar", "close"],
            "structure": [
                json.dumps(crystals["NaCl"].as_dict()),
                crystals["FeO"].to(fmt="cif"),
                crystals["Si"].to(fmt="poscar"),
                rocksalt(0.6).to(fmt="poscar"),  # atoms 0.3 A apart
            ],
            "gap": [5.0, float("nan"), 0.6, 1.0],
        }
    )
    path = tmp_path / f"table{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records")
    spec = {"source": "table", "path": str(path), "id_column": "material", "targets": {"band_gap": "gap"}}
    table, rejected, summary = normalise(tmp_path, "t", spec)
    assert table["reduced_formula"].tolist() == ["NaCl", "FeO", "Si"]
    assert table["band_gap"].isna().tolist() == [False, True, False]
    assert rejected["reason"].tolist() == ["atoms_too_close"]


def test_jarvis_zip_with_missing_values(tmp_path, crystals):
    entries = []
    for index, (name, structure) in enumerate(crystals.items()):
        cartesian = index % 2 == 0
        entries.append(
            {
                "jid": f"JVASP-{index}",
                "atoms": {
                    "lattice_mat": structure.lattice.matrix.tolist(),
                    "coords": (structure.cart_coords if cartesian else structure.frac_coords).tolist(),
                    "elements": [site.specie.symbol for site in structure],
                    "cartesian": cartesian,
                },
                "formation_energy_peratom": -1.0 * index,
                "optb88vdw_bandgap": "na" if index == 1 else 0.5,
                "mbj_bandgap": "na",
            }
        )
    entries.append({"jid": "JVASP-broken", "atoms": {}, "formation_energy_peratom": 0.0, "optb88vdw_bandgap": 0.0, "mbj_bandgap": 0.0})
    archive = tmp_path / "jdft_3d-8-18-2021.json.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("jdft_3d-8-18-2021.json", json.dumps(entries))
    table, rejected, summary = normalise(tmp_path, "j", {"source": "jarvis_dft_3d", "version": "2021"}, [archive])
    assert len(table) == 5 and rejected["id"].tolist() == ["JVASP-broken"]
    assert summary["targets"] == {"formation_energy_per_atom": 5, "band_gap": 4, "band_gap_mbj": 0}
    assert sorted(table["reduced_formula"]) == sorted(["NaCl", "FeO", "MgO", "Si", "CsCl"])


def test_matbench_ids_are_matbenchs_own():
    from matprobe.inputs.sources import matbench_ids

    ids = matbench_ids("matbench_mp_e_form", 132752)
    assert ids[0] == "mb-mp-e-form-000001" and ids[-1] == "mb-mp-e-form-132752"
    assert matbench_ids("matbench_mp_gap", 106113)[41] == "mb-mp-gap-000042"


def test_matbench_and_mp2018_json_gz(tmp_path, crystals):
    structures = list(crystals.values())
    matbench = {
        "index": [f"mb-mp-e_form-{i:05d}" for i in range(len(structures))],
        "columns": ["structure", "e_form"],
        "data": [[s.as_dict(), -0.1 * i] for i, s in enumerate(structures)],
    }
    path = tmp_path / "matbench_mp_e_form.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(matbench, fh)
    spec = {"source": "matbench", "task": "matbench_mp_e_form", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    table, _, summary = normalise(tmp_path, "mb", spec, [path])
    assert table["id"].tolist() == [f"mb-mp-e-form-{i}" for i in range(1, 6)]  # Matbench's own ids, not row numbers
    assert summary["targets"] == {"formation_energy_per_atom": 5}

    mp2018 = {
        "columns": ["mpid", "e_form", "gap pbe", "structure"],
        "index": list(range(len(structures))),
        "data": [[f"mp-{i}", -0.2 * i, 0.1 * i, s.as_dict()] for i, s in enumerate(structures)],
    }
    path = tmp_path / "mp_all_20181018.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(mp2018, fh)
    table, _, summary = normalise(tmp_path, "mp", {"source": "mp_2018", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}, [path])
    assert table["id"].tolist() == [f"mp-{i}" for i in range(5)]
    assert table["band_gap"].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


class _FakeSummary:
    def __init__(self, documents, fail_with=None):
        self.documents, self.fail_with, self.queries = documents, fail_with, []

    def search(self, **query):
        self.queries.append(query)
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        return self.documents


class _FakeRester:
    """Stands in for mp_api.client.MPRester: same context-manager protocol and summary.search call."""

    def __init__(self, summary):
        self.materials = type("materials", (), {"summary": summary})()

    def __call__(self, api_key):
        self.api_key = api_key
        return self

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def test_materials_project_api_in_chunks_without_leaking_the_key(monkeypatch, crystals):
    key = "SECRET-KEY-1234567890abcdef"
    monkeypatch.setenv("MP_API_KEY", key)
    documents = [{"material_id": f"mp-{i}", "structure": s, "formation_energy_per_atom": -1.0, "band_gap": 2.0} for i, s in enumerate(crystals.values())]
    summary = _FakeSummary(documents)
    client = _FakeRester(summary)
    spec = {"source": "materials_project", "elements": ["O"], "chunk_size": 2, "limit": 3}
    targets = {"formation_energy_per_atom": "formation_energy_per_atom", "band_gap": "band_gap"}
    records = list(read_materials_project(spec, [], targets, client_factory=client))
    assert [r.id for r in records] == ["mp-0", "mp-1", "mp-2"]
    assert client.api_key == key
    assert summary.queries[0]["elements"] == ["O"] and summary.queries[0]["chunk_size"] == 2
    assert summary.queries[0]["num_chunks"] == 2
    failing = _FakeRester(_FakeSummary([], fail_with=f"401 Unauthorized for key {key}"))
    with pytest.raises(MatprobeError) as error:
        list(read_materials_project(spec, [], targets, client_factory=failing))
    assert key not in str(error.value) and "***" in str(error.value)
    monkeypatch.delenv("MP_API_KEY")
    with pytest.raises(MatprobeError, match="MP_API_KEY"):
        list(read_materials_project(spec, [], targets, client_factory=client))


def test_embedded_demo_normalises_completely(tmp_path):
    table, rejected, summary = normalise(tmp_path, "demo", {"source": "embedded"})
    assert len(table) == 3938 and len(rejected) == 0
    assert table["id"].is_unique
    assert summary["elements"]["Fe"] > 100 and summary["elements"]["O"] > 1000
    # the package's own table, keyed by no machine's path: the same summary wherever matprobe is installed
    assert summary["input_sha256"] == {"embedded:flla_2015.parquet": hashlib.sha256(EMBEDDED_FILE.read_bytes()).hexdigest()}


def test_input_checksums_are_keyed_by_portable_names(tmp_path, monkeypatch, crystals):
    """summary.json names an input by its path relative to the working directory, or else by source and file name
    (with parent folders where two names alike would collide), never by a machine's absolute path."""
    from matprobe.inputs.data import portable_keys

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    root = write_cgcnn_folder(elsewhere / "cg", crystals)
    with tarfile.open(elsewhere / "set.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="set")
    (work / "data").mkdir(parents=True)
    (work / "data" / "set.tar.gz").write_bytes((elsewhere / "set.tar.gz").read_bytes())
    (work / "linked").symlink_to(elsewhere)  # a data folder linked in from another disk keeps its name here
    monkeypatch.chdir(work)
    digest = hashlib.sha256((elsewhere / "set.tar.gz").read_bytes()).hexdigest()
    for path, key in (("data/set.tar.gz", "data/set.tar.gz"), (work / "data" / "set.tar.gz", "data/set.tar.gz"),
                      ("linked/set.tar.gz", "linked/set.tar.gz"), (elsewhere / "set.tar.gz", "cgcnn_dir:set.tar.gz")):
        spec = {"source": "cgcnn_dir", "path": str(path), "columns": ["formation_energy_per_atom", "band_gap"]}
        assert normalise(tmp_path, "cg", spec)[2]["input_sha256"] == {key: digest}, path
    # two files of one name outside the working directory stay apart, each with its checksum
    (elsewhere / "other").mkdir()
    (elsewhere / "other" / "set.tar.gz").write_bytes(b"not the same")
    keys = portable_keys({elsewhere / "set.tar.gz": "a", elsewhere / "other" / "set.tar.gz": "b"}, "matbench")
    assert keys == {"matbench:elsewhere/set.tar.gz": "a", "matbench:other/set.tar.gz": "b"}


def test_a_dataset_in_one_file_per_set_reads_as_one_table_and_keeps_its_published_sets(tmp_path, crystals):
    from matprobe.inputs.sources import check_dataset, local_inputs, published_sets
    from matprobe.prepare.splits import make_split

    names = list(crystals)  # NaCl, FeO, MgO, Si, CsCl
    parts = {"train": names[:3], "val": names[3:4], "test": names[4:]}
    sets = {}
    for set_name, members in parts.items():
        path = tmp_path / f"{set_name}.csv"  # CDVAE's layout: pandas' unnamed index column, material_id, cif, property
        pd.DataFrame([{"material_id": f"{set_name}-{n}", "cif": crystals[n].to(fmt="cif"), "heat_ref": -0.5 * k}
                      for k, n in enumerate(members)]).to_csv(path)
        sets[set_name] = str(path)
    (tmp_path / "test.csv").write_text((tmp_path / "test.csv").read_text() + f'9,test-broken,"{BAD_CIF}",0.0\n')
    spec = {"source": "table", "sets": sets, "id_column": "material_id", "structure_column": "cif", "targets": {"heat_ref": "heat_ref"}}
    check_dataset("perov", spec)
    assert local_inputs(spec) == [sets["train"], sets["val"], sets["test"]]
    table, rejected, summary = normalise(tmp_path, "perov", spec)
    assert table["id"].tolist() == ["train-NaCl", "train-FeO", "train-MgO", "val-Si", "test-CsCl"]
    assert rejected["id"].tolist() == ["test-broken"]
    assert published_sets(spec) == {"train": ["train-NaCl", "train-FeO", "train-MgO"], "val": ["val-Si"],
                                     "id_test": ["test-CsCl", "test-broken"]}
    # the split {published: true} makes for this dataset: the files' sets, less what the data stage rejected
    split = make_split(table, "file-perov", [{"published": "perov", "dataset": spec}], {"seed": 0})
    assert split["kind"] == "file" and split["sets"] == {"train": ["train-FeO", "train-MgO", "train-NaCl"], "val": ["val-Si"],
                                                         "id_test": ["test-CsCl"]}
    # a CIF folder takes one labels table per set the same way
    folder = tmp_path / "cifs"
    folder.mkdir()
    labels = {}
    for set_name, members in parts.items():
        for n in members:
            (folder / f"{n}.cif").write_text(crystals[n].to(fmt="cif"))
        labels[set_name] = str(tmp_path / f"labels-{set_name}.csv")
        pd.DataFrame({"file": members, "e": [1.0] * len(members)}).to_csv(labels[set_name], index=False)
    cif_spec = {"source": "cif_folder", "path": str(folder), "sets": labels, "targets": {"e": "e"}}
    check_dataset("cifs", cif_spec)
    assert published_sets(cif_spec) == {"train": names[:3], "val": names[3:4], "id_test": names[4:]}
    assert local_inputs(cif_spec) == [str(folder), labels["train"], labels["val"], labels["test"]]
    assert normalise(tmp_path, "cifs", cif_spec)[2]["accepted"] == 5


@pytest.mark.parametrize("entry, expected", [
    ({"source": "table", "path": "t.csv", "sets": {"train": "a", "val": "b", "test": "c"}}, "datasets.d: give `path` or `sets`, not both"),
    ({"source": "table", "sets": {"train": "a", "val": "b"}}, "datasets.d.sets: no file for set id_test (or test)"),
    ({"source": "table", "sets": {"train": "a", "val": "b", "test": "c", "id_test": "e"}}, "test and id_test name one set"),
    ({"source": "cif_folder", "path": "cifs", "labels": "l.csv", "sets": {"train": "a", "val": "b", "test": "c"}},
     "give `labels` or `sets`, not both"),
    ({"source": "cif_folder", "path": "cifs"}, "source cif_folder needs `labels` or `sets`"),
])
def test_one_file_per_set_is_checked_when_the_config_is(entry, expected):
    from matprobe.config import validate_config

    with pytest.raises(MatprobeError) as error:
        validate_config({"datasets": {"d": {**entry, "targets": {"e": "e"}}}, "targets": ["e"]})
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_the_published_split_is_named_after_each_dataset_that_has_one():
    from matprobe.config import runs, validate_config

    sets = {"train": "a.csv", "val": "b.csv", "test": "c.csv"}
    config = validate_config({"datasets": {"perov_5": {"source": "table", "sets": sets, "targets": {"e": "e"}},
                                           "other": {"source": "table", "path": "t.csv", "targets": {"e": "e"}}},
                              "targets": ["e"], "splits": [{"published": True}, {"omit": "O"}], "models": ["cgcnn"], "seeds": [0]})
    assert {(run.dataset, run.split) for run in runs(config)} == {
        ("perov_5", "file-perov_5"), ("perov_5", "omit-O"), ("perov_5", "omit-O-control"), ("other", "omit-O"), ("other", "omit-O-control")}
    with pytest.raises(MatprobeError, match=r"splits.0: published: no dataset is given as one file per set \(`sets`\)"):
        validate_config({"splits": [{"published": True}]})
