import json

import numpy as np
import pandas as pd
import pytest

from matprobe import MatprobeError
from matprobe.prepare.splits import check_split, make_split, split_name, split_names, split_stats, write_split

OPTIONS = {"seed": 0, "val_fraction": 0.1, "id_test_fraction": 0.1, "min_ood": 5, "controls": True}
DEFINITIONS = [{"omit": "Fe"}, {"omit": "O"}, {"omit": ["Fe", "O"]}, {"omit_group": 16}, {"omit_period": 2}, {"random": True}]


@pytest.fixture
def materials():
    """300 handmade materials: binaries and ternaries drawn from a small palette, Fe and O among them."""
    rng = np.random.default_rng(42)
    palette = ["Fe", "O", "Na", "Cl", "Mg", "Si", "S", "Se", "Cu", "Li", "N"]
    rows = []
    for index in range(300):
        elements = sorted(rng.choice(palette, size=rng.integers(1, 4), replace=False).tolist())
        rows.append({"id": f"m-{index}", "elements": elements, "formation_energy_per_atom": rng.normal(), "band_gap": abs(rng.normal())})
    return pd.DataFrame(rows)


def test_names_are_derived_from_definitions():
    assert [split_name(d) for d in DEFINITIONS] == ["omit-Fe", "omit-O", "omit-Fe-O", "omit-group16", "omit-period2", "random"]
    assert split_names([{"omit": "Fe"}, {"random": True}]) == ["omit-Fe", "omit-Fe-control", "random"]
    assert split_names([{"omit": "Fe"}], controls=False) == ["omit-Fe"]
    with pytest.raises(MatprobeError, match="defined twice"):
        split_names([{"omit": "Fe"}, {"omit": ["Fe"]}])


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_every_split_keeps_its_invariants(materials, definition):
    elements = dict(zip(materials["id"], materials["elements"]))
    for name in split_names([definition]):
        split = make_split(materials, name, DEFINITIONS, OPTIONS)
        sets = split["sets"]
        all_ids = [i for members in sets.values() for i in members]
        assert len(all_ids) == len(set(all_ids))
        omitted = set(split["omitted_elements"])
        if split["kind"] == "omission":
            for set_name in ("train", "val", "id_test"):
                assert not any(omitted & set(elements[i]) for i in sets[set_name])
            assert all(omitted & set(elements[i]) for i in sets["ood_test"])
            # every material is used: the ID pool is split, every OOD material is tested
            assert len(all_ids) == len(materials)
            assert len(sets["ood_test"]) == sum(bool(omitted & set(e)) for e in materials["elements"])
        elif split["kind"] == "control":
            omission = make_split(materials, name.removesuffix("-control"), DEFINITIONS, OPTIONS)
            assert len(sets["train"]) == len(omission["sets"]["train"])
            assert len(sets["val"]) == len(omission["sets"]["val"])
            assert any(omitted & set(elements[i]) for i in sets["train"])  # the control sees the chemistry
            assert all(omitted & set(elements[i]) for i in sets["ood_test"])
            assert not any(omitted & set(elements[i]) for i in sets["id_test"])
        else:
            assert "ood_test" not in sets and len(all_ids) == len(materials)


def test_group_and_period_splits_resolve_to_elements(materials):
    assert set(make_split(materials, "omit-group16", DEFINITIONS, OPTIONS)["omitted_elements"]) >= {"O", "S", "Se"}
    assert set(make_split(materials, "omit-period2", DEFINITIONS, OPTIONS)["omitted_elements"]) >= {"Li", "N", "O"}


def test_splits_are_deterministic_from_the_seed(materials):
    first = make_split(materials, "omit-Fe", DEFINITIONS, OPTIONS)
    again = make_split(materials.sample(frac=1.0, random_state=3).reset_index(drop=True), "omit-Fe", DEFINITIONS, OPTIONS)
    other = make_split(materials, "omit-Fe", DEFINITIONS, {**OPTIONS, "seed": 1})
    assert first["sets"]["train"] != other["sets"]["train"]
    assert make_split(materials, "omit-Fe", DEFINITIONS, OPTIONS) == first
    assert set(again["sets"]["ood_test"]) == set(first["sets"]["ood_test"])


def test_a_control_redrawn_per_seed_draws_other_crystals_of_the_same_sizes(materials):
    first = make_split(materials, "omit-Fe-control", DEFINITIONS, OPTIONS)
    # draw 0 is the control every earlier run trained on: the same file, with no draw recorded
    assert make_split(materials, "omit-Fe-control", DEFINITIONS, {**OPTIONS, "draw": 0}) == first and "draw" not in first
    second = make_split(materials, "omit-Fe-control", DEFINITIONS, {**OPTIONS, "draw": 1})
    # the same sizes but for the held-out crystals, which are those the draw happened to leave out
    assert second["draw"] == 1 and {**second["counts"], "ood_test": 0} == {**first["counts"], "ood_test": 0}
    assert second["sets"]["train"] != first["sets"]["train"] and second["sets"]["ood_test"] != first["sets"]["ood_test"]
    # the omission is one draw: a draw number does not touch it
    assert make_split(materials, "omit-Fe", DEFINITIONS, {**OPTIONS, "draw": 1}) == make_split(materials, "omit-Fe", DEFINITIONS, OPTIONS)


def test_a_run_reads_its_controls_draw_only_where_controls_are_redrawn():
    from matprobe.layout import Layout

    plain, redrawn = (Layout("s", "g", "seed0-val0.1-test0.1", "t", redraw_controls=flag) for flag in (False, True))
    one = "results/splits/demo/seed0-val0.1-test0.1/omit-Fe-control.json"
    assert str(plain.split_file("demo", "omit-Fe-control", 2)) == one
    assert str(redrawn.split_file("demo", "omit-Fe-control", 0)) == one
    assert str(redrawn.split_file("demo", "omit-Fe-control", 2)) == "results/splits/demo/seed0-val0.1-test0.1/draw2/omit-Fe-control.json"
    assert str(redrawn.split_file("demo", "omit-Fe", 2)) == "results/splits/demo/seed0-val0.1-test0.1/omit-Fe.json"


def test_absent_element_and_too_few_ood_stop_with_one_line(materials):
    with pytest.raises(MatprobeError) as error:
        make_split(materials, "omit-Au", [{"omit": "Au"}], OPTIONS)
    assert "element Au is absent" in str(error.value) and "0 of 300" in str(error.value)
    n_fe = sum("Fe" in e for e in materials["elements"])
    with pytest.raises(MatprobeError) as error:
        make_split(materials, "omit-Fe", DEFINITIONS, {**OPTIONS, "min_ood": n_fe + 1})
    assert f"only {n_fe} materials contain Fe" in str(error.value)
    with pytest.raises(MatprobeError, match="not an element symbol"):
        make_split(materials, "omit-Xx", [{"omit": "Xx"}], OPTIONS)


def test_checks_catch_broken_splits(materials):
    split = make_split(materials, "omit-Fe", DEFINITIONS, OPTIONS)
    leaked = json.loads(json.dumps(split))
    leaked["sets"]["train"].append(leaked["sets"]["ood_test"][0])
    with pytest.raises(MatprobeError, match="is in both"):
        check_split(leaked, materials)
    leaked = json.loads(json.dumps(split))
    fe_material = leaked["sets"]["ood_test"].pop()
    leaked["sets"]["id_test"].append(fe_material)
    with pytest.raises(MatprobeError, match="id_test holds .* which contains omitted Fe"):
        check_split(leaked, materials)
    leaked = json.loads(json.dumps(split))
    leaked["sets"]["ood_test"].append(leaked["sets"]["train"].pop())
    with pytest.raises(MatprobeError, match="ood_test holds"):
        check_split(leaked, materials)


def test_files_and_stats(tmp_path, materials):
    table = materials.assign(lattice=[[1.0] * 9] * len(materials), frac_coords=[[0.0] * 3] * len(materials), numbers=[[1]] * len(materials))
    table.to_parquet(tmp_path / "materials.parquet")
    paths = []
    for name in ["omit-Fe", "omit-Fe-control", "random"]:
        path = tmp_path / f"{name}.json"
        write_split(tmp_path / "materials.parquet", name, DEFINITIONS, OPTIONS, path)
        paths.append(path)
    stats = split_stats(tmp_path / "materials.parquet", paths, tmp_path / "stats.parquet")
    ood = stats[(stats["split"] == "omit-Fe") & (stats["set"] == "ood_test")].iloc[0]
    assert ood["n"] == ood["n_with_Fe"] == ood["n_with_omitted"] > 0
    train = stats[(stats["split"] == "omit-Fe") & (stats["set"] == "train")].iloc[0]
    assert train["n_with_Fe"] == 0
    fe_mean = table.loc[table["elements"].map(lambda e: "Fe" in e), "band_gap"].mean()
    assert ood["band_gap_mean"] == pytest.approx(fe_mean)
    assert set(stats["split"]) == {"omit-Fe", "omit-Fe-control", "random"}


def test_adding_a_split_leaves_the_other_split_files_current(tmp_path):
    """A split job's parameters are its own definition: a config (or another study of the dataset) with more splits
    plans only the new ones, so the models trained on the others are not retrained."""
    import subprocess

    from conftest import copy_workflow

    workdir = copy_workflow(tmp_path / "wf")
    data = "datasets: {demo: {source: embedded, limit: 1500}}\n"
    (workdir / "two.yaml").write_text(data + "splits: [{omit: Fe}, {omit: O}]\n")
    (workdir / "three.yaml").write_text(data + "splits: [{omit: Fe}, {omit: O}, {omit: Na}]\n")
    made = subprocess.run(["snakemake", "splits", "--cores", "2", "--configfile", "two.yaml"], cwd=workdir, capture_output=True, text=True,
                          timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    plan = subprocess.run(["snakemake", "splits", "-n", "--configfile", "three.yaml"], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr[-2000:]
    planned = {line.split("split=")[1].strip() for line in plan.stdout.splitlines() if "wildcards:" in line and "split=" in line}
    assert planned == {"omit-Na", "omit-Na-control"}
