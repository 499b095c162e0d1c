"""Every config of docs/own-data.md (config/examples/) through `snakemake splits`, on tiny inputs written here:
local files where the example reads them, downloads served on 127.0.0.1, and a stand-in for the Materials Project
client. The examples' own settings are kept; an override file only points downloads at the local server and lowers
`min_ood` to the tiny sets' size."""

import functools
import gzip
import hashlib
import http.server
import json
import os
import subprocess
import threading
import zipfile

import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow
from matprobe.inputs.sources import EMBEDDED_FILE
from matprobe.inputs.structures import Crystal

EXAMPLES = sorted(p.name for p in (REPO / "config" / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def demo_structures():
    """60 small real crystals of the embedded demo, with O, Fe/Co/Ni, chalcogens and period-4 elements among them."""
    demo = pd.read_parquet(EMBEDDED_FILE)
    demo = demo[demo["numbers"].map(len) <= 10]
    has = {z: demo["numbers"].map(lambda numbers, z=z: z in set(numbers)) for z in (8, 26)}  # O, Fe
    demo = pd.concat([demo[has[26]].head(15), demo[has[8] & ~has[26]].head(20), demo[~has[8] & ~has[26]].head(25)])
    return [(row.id, Crystal.from_row(row._asdict()).to_pymatgen(), row.formation_energy_per_atom, row.e_above_hull)
            for row in demo.itertuples()]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = tmp_path_factory.mktemp("served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_inputs(example: str, workdir, structures, served, url) -> dict:
    """The example's inputs, and the override config that points it at them."""
    override: dict = {"split_options": {"min_ood": 3}}
    if example == "cif-folder.yaml":
        folder = workdir / "data" / "my_cifs"
        folder.mkdir(parents=True)
        rows = []
        for material_id, structure, energy, hull in structures:
            (folder / f"{material_id}.cif").write_text(structure.to(fmt="cif"))
            rows.append({"file": f"{material_id}.cif", "Ef (eV/atom)": energy, "gap": hull})
        rows.append({"file": "not-there", "Ef (eV/atom)": -1.0, "gap": 0.0})  # counted as unparsable, not fatal
        pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    elif example == "table.yaml":
        (workdir / "data").mkdir()
        forms = [lambda s: s.to(fmt="cif"), lambda s: s.to(fmt="poscar"), lambda s: json.dumps(s.as_dict())]
        rows = [{"material": material_id, "structure": forms[k % 3](structure), "gap_pbe": hull}
                for k, (material_id, structure, _, hull) in enumerate(structures)]
        pd.DataFrame(rows).to_csv(workdir / "data" / "structures.csv", index=False)
    elif example == "published-split.yaml":
        # CDVAE's layout: train/val/test.csv, each with pandas' unnamed index column, material_id, cif and heat_ref
        folder = workdir / "data" / "perov_5"
        folder.mkdir(parents=True)
        rows = [{"material_id": material_id, "cif": structure.to(fmt="cif"), "heat_ref": energy}
                for material_id, structure, energy, _ in structures]
        for name, part in (("train", rows[0::3] + rows[1::3]), ("val", rows[2::6]), ("test", rows[5::6])):
            pd.DataFrame(part).to_csv(folder / f"{name}.csv")
    elif example == "jarvis.yaml":
        entries = [{"jid": f"JVASP-{k}", "atoms": {"lattice_mat": s.lattice.matrix.tolist(), "coords": s.frac_coords.tolist(),
                                                   "elements": [site.specie.symbol for site in s], "cartesian": False},
                    "formation_energy_peratom": energy, "optb88vdw_bandgap": hull, "mbj_bandgap": "na"}
                   for k, (_, s, energy, hull) in enumerate(structures)]
        with zipfile.ZipFile(served / "jarvis.zip", "w") as archive:
            archive.writestr("jdft_3d-8-18-2021.json", json.dumps(entries))
        override["datasets"] = {"jarvis": {"url": f"{url}/jarvis.zip"}}
    elif example == "matbench.yaml":
        override["datasets"] = {}
        for name, column in (("mb_e_form", "e_form"), ("mb_gap", "gap pbe")):
            table = {"index": list(range(len(structures))), "columns": ["structure", column],
                     "data": [[s.as_dict(), energy if column == "e_form" else hull] for _, s, energy, hull in structures]}
            path = served / f"{name}.json.gz"
            path.write_bytes(gzip.compress(json.dumps(table).encode()))
            override["datasets"][name] = {"url": f"{url}/{path.name}", "sha256": _sha256(path)}
    elif example == "materials-project.yaml":
        # a stand-in for mp_api: the documents the summary endpoint would return (every one of them has Li added)
        package = workdir / "fake_mp" / "mp_api"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        documents = []
        for material_id, s, energy, hull in structures:
            s = s.copy()
            s.append("Li", [0.31, 0.29, 0.27])
            documents.append({"material_id": material_id, "structure": s.as_dict(), "formation_energy_per_atom": energy, "band_gap": hull})
        (package / "documents.json").write_text(json.dumps(documents))
        (package / "client.py").write_text(
            "import json, pathlib\n"
            "class _Summary:\n"
            "    def search(self, fields, chunk_size, elements=None, num_chunks=None):\n"
            "        return json.loads((pathlib.Path(__file__).parent / 'documents.json').read_text())\n"
            "class _Materials:\n    summary = _Summary()\n"
            "class MPRester:\n"
            "    def __init__(self, key):\n        self.materials = _Materials()\n"
            "    def __enter__(self):\n        return self\n"
            "    def __exit__(self, *exc):\n        return False\n")
    else:
        raise AssertionError(f"{example}: the test does not know this example's inputs")
    return override


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_own_data_example_makes_its_splits(example, tmp_path, demo_structures, server):
    served, url = server
    workdir = copy_workflow(tmp_path / "wf")
    override = write_inputs(example, workdir, demo_structures, served, url)
    (workdir / "override.yaml").write_text(yaml.safe_dump(override))
    env = {**os.environ, "MP_API_KEY": "not-a-real-key",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(workdir / "fake_mp"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(["snakemake", "splits", "--cores", "2", "--configfile", f"config/examples/{example}", "override.yaml"],
                            cwd=workdir, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load((REPO / "config" / "examples" / example).read_text())
    for dataset in config["datasets"]:
        stats = pd.read_parquet(next((workdir / "results" / "splits" / dataset).glob("*/stats.parquet")))
        assert {"train", "val", "id_test", "ood_test"} <= set(stats["set"]), (dataset, stats)
        assert (stats.loc[(stats["set"] == "ood_test") & (stats["kind"] == "omission"), "n"] >= 3).all()
        summary = json.loads((workdir / "results" / "data" / dataset / "summary.json").read_text())
        assert summary["accepted"] >= 50, summary
        if example == "cif-folder.yaml":
            assert summary["rejected_by_reason"] == {"unparsable": 1}
        if example == "published-split.yaml":  # the published split is the three files' sets, named after the dataset
            split = json.loads(next((workdir / "results" / "splits" / dataset).glob("*/file-perov_5.json")).read_text())
            for name, file in (("train", "train"), ("val", "val"), ("id_test", "test")):
                ids = pd.read_csv(workdir / "data" / "perov_5" / f"{file}.csv", dtype=str)["material_id"]
                assert split["sets"][name] == sorted(ids), name
            assert "ood_test" not in split["sets"] and split["kind"] == "file"
