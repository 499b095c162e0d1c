"""Malformed inputs of every kind, generated from good ones by seeded mutations: each must end in a one-line error
from the project (MatprobeError, never a library's exception) or a counted skip, and results present before the
run must be unchanged after it. Deterministic (fixed seeds), so a failure reproduces."""

import copy
import gzip
import io
import json
import random
import tarfile

import numpy as np
import pandas as pd
import pytest

from matprobe import MatprobeError
from matprobe.config import load_config, validate_config
from matprobe.inputs.data import normalise_dataset, normalise_record
from matprobe.inputs.sources import RawRecord
from matprobe.prepare.splits import make_split
from matprobe.models.seam import load_trained

from conftest import REPO

JUNK = ["", "nan", "-inf", "1e400", "abc", "1,5", "[]", "{", "\x00", "-0", "999999999999", "None", "é"]


def one_line(error: Exception) -> None:
    assert isinstance(error, MatprobeError), f"{type(error).__name__}: {error}"
    assert "\n" not in str(error) and str(error).strip(), repr(str(error))


def mutate_text(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    kind = rng.randrange(5)
    if kind == 0:  # cut anywhere
        return text[: rng.randrange(len(text))]
    if kind == 1:  # drop lines
        return "\n".join(line for line in lines if rng.random() > 0.25)
    if kind == 2:  # a number becomes junk
        tokens = text.split(" ")
        numeric = [k for k, token in enumerate(tokens) if token.strip().replace(".", "", 1).replace("-", "", 1).isdigit()]
        if numeric:
            tokens[rng.choice(numeric)] = rng.choice(JUNK)
        return " ".join(tokens)
    if kind == 3:  # lines repeated or swapped
        k = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines)), lines[k])
        return "\n".join(lines)
    return "".join(c if rng.random() > 0.02 else rng.choice("#;_'\"\t") for c in text)


def test_cif_text(crystals):
    rng = random.Random(0)
    good = [s.to(fmt="cif") for s in crystals.values()]
    outcomes = {"accepted": 0, "skipped": 0}
    for case in range(80):
        text = mutate_text(rng.choice(good), rng)
        row, rejection, _ = normalise_record(RawRecord(f"c{case}", "any", text, {"e": rng.choice(JUNK + ["1.0"])}), 0.5)
        assert (row is None) != (rejection is None)
        if rejection:
            assert rejection["reason"] and "\n" not in rejection["detail"]
        outcomes["skipped" if rejection else "accepted"] += 1
    assert outcomes["skipped"] > 20 and outcomes["accepted"] > 5, outcomes  # the mutations reach both outcomes


def _table(crystals) -> pd.DataFrame:
    return pd.DataFrame({"id": list(crystals), "structure": [json.dumps(s.as_dict()) for s in crystals.values()],
                         "e": [-1.0, -0.5, 0.0, 0.5, 1.0]})


def _run_keeps_earlier_results(tmp_path, spec, files=()):
    """Normalise into a folder holding earlier results: a failure leaves them byte for byte."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    before = {name: f"earlier {name}".encode() for name in ("materials.parquet", "rejected.parquet", "summary.json")}
    for name, content in before.items():
        (out / name).write_bytes(content)
    try:
        summary = normalise_dataset("x", spec, list(files), out / "materials.parquet", out / "rejected.parquet", out / "summary.json")
    except Exception as error:  # noqa: BLE001 - the point is to see which
        one_line(error)
        assert {name: (out / name).read_bytes() for name in before} == before
        return "error"
    assert summary["accepted"] + summary["rejected"] == summary["read"]
    return "ran"


def test_tables(tmp_path, crystals):
    rng = random.Random(1)
    good = _table(crystals)
    outcomes = []
    for case in range(30):
        path = tmp_path / f"t{case}.csv"
        frame = good.copy()
        kind = case % 6
        if kind == 0:
            frame = frame.drop(columns=[rng.choice(list(frame.columns))])
        elif kind == 1:
            frame["structure"] = [mutate_text(text, rng) for text in frame["structure"]]
        elif kind == 2:
            frame["e"] = [rng.choice(JUNK) for _ in range(len(frame))]
        if kind == 3:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(200)))
        elif kind == 4:
            text = frame.to_csv(index=False)
            path.write_text(text[: rng.randrange(len(text))])
        elif kind == 5:
            path = path.with_suffix(rng.choice([".parquet", ".json", ".txt"]))
            path.write_bytes(frame.to_csv(index=False).encode())
        else:
            frame.to_csv(path, index=False)
        outcomes.append(_run_keeps_earlier_results(tmp_path, {"source": "table", "path": str(path), "targets": {"e": "e"}}))
    assert outcomes.count("error") >= 5 and outcomes.count("ran") >= 5, outcomes


def _cgcnn_archive(crystals) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = {"set/id_prop.csv": "".join(f"{k},{-k / 10}\n" for k in range(len(crystals)))}
        members.update({f"set/{k}.cif": s.to(fmt="cif") for k, s in enumerate(crystals.values())})
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_archives(tmp_path, crystals):
    rng = random.Random(2)
    good = _cgcnn_archive(crystals)
    outcomes = []
    for case in range(24):
        data = bytearray(good)
        kind = case % 3
        if kind == 0:
            data = data[: rng.randrange(20, len(data))]
        elif kind == 1:
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(20, len(data))] ^= rng.randrange(1, 256)
        else:  # a damaged member inside an intact archive
            raw = bytearray(gzip.decompress(good))
            for _ in range(rng.randrange(1, 6)):
                raw[rng.randrange(len(raw))] = rng.randrange(32, 127)
            data = bytearray(gzip.compress(bytes(raw)))
        path = tmp_path / f"a{case}.tar.gz"
        path.write_bytes(bytes(data))
        outcomes.append(_run_keeps_earlier_results(tmp_path, {"source": "cgcnn_dir", "path": str(path), "columns": ["e"]}))
    assert outcomes.count("error") >= 8 and outcomes.count("ran") >= 2, outcomes


def _mutate_config(config: dict, rng: random.Random) -> dict:
    config = copy.deepcopy(config)
    paths = []

    def walk(node, trail):
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append(trail + [key])
                walk(value, trail + [key])

    walk(config, [])
    trail = rng.choice(paths)
    holder = config
    for key in trail[:-1]:
        holder = holder[key]
    action = rng.randrange(3)
    if action == 0:
        del holder[trail[-1]]
    elif action == 1:
        holder[trail[-1]] = rng.choice([*JUNK, -1, 0, 3.5, [], {}, None, True, ["Xx"], {"omit": "fe"}])
    else:
        holder[trail[-1] + "_typo"] = holder[trail[-1]]
    return config


@pytest.mark.parametrize("name", ["config.yaml", "mp36k-study.yaml", "examples/cif-folder.yaml"])
def test_configs(name):
    import yaml

    rng = random.Random(name)
    good = yaml.safe_load((REPO / "config" / name).read_text())
    load_config(REPO / "config" / name)
    outcomes = []
    for _ in range(60):
        try:
            validate_config(_mutate_config(good, rng))
            outcomes.append("valid")
        except Exception as error:  # noqa: BLE001
            one_line(error)
            outcomes.append("error")
    assert outcomes.count("error") >= 15, outcomes


def test_split_settings():
    rng = random.Random(3)
    for case in range(60):
        n = rng.randrange(3, 60)
        materials = pd.DataFrame({"id": [f"m{k}" for k in range(n)],
                                  "elements": [rng.choice([["Na", "Cl"], ["Fe", "O"], ["O", "Si"], ["Fe"]]) for _ in range(n)]})
        options = {"seed": rng.randrange(5), "val_fraction": rng.uniform(0.0, 0.6), "id_test_fraction": rng.uniform(0.0, 0.6),
                   "min_ood": rng.randrange(1, 10)}
        name = rng.choice(["omit-Fe", "omit-Fe-control", "omit-O", "random"])
        definitions = [{"omit": "Fe"}, {"omit": "O"}, {"random": True}]
        try:
            split = make_split(materials, name, definitions, options)
        except Exception as error:  # noqa: BLE001
            one_line(error)
            continue
        assert all(split["sets"][key] for key in split["sets"])  # no set that a later stage would find empty


def test_grids():
    rng = random.Random(4)
    for _ in range(80):
        low, high = sorted(rng.choice([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0]) for _ in range(2))
        grid = {"points": rng.randrange(1, 14), "range": [low, high] if rng.random() > 0.2 else [high, low]}
        try:
            config = validate_config({"landscape": {"grid_2d": grid}})
        except Exception as error:  # noqa: BLE001
            one_line(error)
            continue
        accepted = config["landscape"]["grid_2d"]
        assert np.isclose(np.linspace(*accepted["range"], accepted["points"]), 0.0).any()


def damaged(data: bytes, rng: random.Random, truncate: bool) -> bytes:
    """A file cut short at a random byte (never empty, never whole), or with a few bytes flipped."""
    if truncate:
        return data[: rng.randrange(1, len(data) - 1)]
    out = bytearray(data)
    for _ in range(rng.randrange(1, 8)):
        out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
    return bytes(out)


def test_model_files(tiny_model, tmp_path):
    rng = random.Random(5)
    good = tiny_model.read_bytes()
    for case in range(30):
        path = tmp_path / f"model{case}.pt"
        path.write_bytes(damaged(good, rng, truncate=bool(case % 2)))
        try:
            load_trained(path)
        except Exception as error:  # noqa: BLE001
            one_line(error)
            assert str(path) in str(error)
            continue
        # a flip that lands in padding or metadata the model does not use can load; its weights must be intact
        assert bytes(data) == good or _weights_equal(path, tiny_model)


def _weights_equal(path, reference) -> bool:
    import torch

    got, expected = load_trained(path).module.state_dict(), load_trained(reference).module.state_dict()
    return all(torch.equal(got[name], expected[name]) for name in expected)


# ---- the classes of round two (issue 37): ids, magnitudes, elements, orders, truncated caches -----------------------

NUMERIC_LOOKING = ["0", "00", "0000", "0010", "10", "1e1", "1E1", "10.0", "-0", "+1", "0x10", "nan", "NA", "inf", "None", "1,5", " 7 ",
                   "7", "", " ", "\t", "é", "mp-1", "01"]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_ids_are_kept_as_written_and_empty_ones_counted(tmp_path, crystals, fmt):
    """Whatever an id looks like (a number, a float, NaN, blank), the table keeps it as written (spaces around it
    dropped), the first of two equal ids wins, and an empty id is a counted rejection."""
    rng = random.Random(f"ids-{fmt}")
    for case in range(6):
        ids = [rng.choice(NUMERIC_LOOKING) for _ in range(rng.randrange(3, 12))]
        frame = _table(crystals).sample(n=len(ids), replace=True, random_state=case).reset_index(drop=True)
        frame["id"] = ids
        path = tmp_path / f"ids{case}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "parquet":
            frame.to_parquet(path)
        else:
            path.write_text(frame.to_json(orient="records"))
        out = tmp_path / f"out{case}"
        try:
            summary = normalise_dataset("x", {"source": "table", "path": str(path), "targets": {"e": "e"}}, [],
                                        out / "materials.parquet", out / "rejected.parquet", out / "summary.json")
        except MatprobeError as error:  # only when nothing is left: every id empty
            one_line(error)
            assert all(not i.strip() for i in ids), ids
            continue
        written = [i.strip() for i in ids]
        expected = list(dict.fromkeys(i for i in written if i))
        assert pd.read_parquet(out / "materials.parquet")["id"].tolist() == expected, ids
        reasons = summary["rejected_by_reason"]
        assert reasons.get("empty_id", 0) == written.count("")
        assert reasons.get("duplicate_id", 0) == len([i for i in written if i]) - len(expected)


def test_target_magnitudes():
    """Values of any size: kept where a float32 model can hold them and their squares, refused and counted beyond."""
    from matprobe.inputs.data import LARGEST_TARGET, target_value

    rng = random.Random(6)
    outcomes = {"kept": 0, "out_of_range": 0, "not_finite": 0}
    for _ in range(400):
        text = f"{rng.choice(['', '-', '+'])}{rng.choice(['1', '9.99', '3.4028'])}e{rng.randrange(-10, 400)}"
        value, problem = target_value(rng.choice([text, text.upper()]))
        if problem is None:
            assert np.isfinite(np.float32(value)) and np.isfinite(np.float32(value) ** 2), text
            outcomes["kept"] += 1
        else:
            assert np.isnan(value) and problem in ("out_of_range", "not_finite"), (text, problem)
            assert abs(float(text)) > LARGEST_TARGET
            outcomes[problem] += 1
    assert min(outcomes.values()) > 10, outcomes


def test_elements_beyond_the_feature_table():
    """A crystal with any element: accepted only where every element has node features; otherwise counted as
    unsupported, never an IndexError later."""
    from conftest import rocksalt

    from matprobe.inputs.features import MAX_Z, node_feature_table
    from pymatgen.core.periodic_table import Element

    rng = random.Random(7)
    outcomes = []
    for case in range(40):
        cation = Element.from_Z(rng.choice([rng.randrange(1, 119), rng.randrange(95, 119)])).symbol
        record = RawRecord(f"c{case}", "dict", rocksalt(5.6, cation, "Cl").as_dict(), {"e": "1.0"})
        row, rejection, _ = normalise_record(record, 0.5)
        if row is not None:
            assert max(row["numbers"]) <= MAX_Z and node_feature_table("physical")[row["numbers"]].shape[0] == 8
            outcomes.append("accepted")
        else:
            assert rejection["reason"] == "unsupported_element" and Element(cation).Z > MAX_Z, rejection
            assert "\n" not in rejection["detail"]
            outcomes.append("unsupported")
    assert outcomes.count("accepted") >= 5 and outcomes.count("unsupported") >= 5, outcomes


def test_band_orders():
    """Distance bands in any order, repeated or not: refused in one line, or accepted rising."""
    rng = random.Random(8)
    outcomes = []
    for _ in range(60):
        bands = [rng.choice([0.0, 1.0, 2.0, 2.5, 3.0, 4.0, 8.0]) for _ in range(rng.randrange(2, 7))]
        if rng.random() < 0.3:
            bands = sorted(set(bands))
        try:
            accepted = validate_config({"attribution": {"distance_bands": bands}})["attribution"]["distance_bands"]
        except Exception as error:  # noqa: BLE001
            one_line(error)
            outcomes.append("error")
            continue
        assert all(low < high for low, high in zip(accepted, accepted[1:])), accepted
        outcomes.append("valid")
    assert outcomes.count("error") >= 10 and outcomes.count("valid") >= 5, outcomes


@pytest.mark.parametrize("kind", ["materials", "graphs", "split", "model"])
def test_truncated_and_altered_caches(small, tiny_model, tmp_path, kind):
    """A cache cut anywhere fails its verification job in one line naming it (a split cut only after its last brace
    may still read); flipped bytes fail there unless they land where the check does not look (a Parquet data page)."""
    from matprobe.inputs.verify import check_file

    good = {"materials": small / "materials.parquet", "graphs": small / "graphs.pt", "split": small / "omit-O.json",
            "model": tiny_model}[kind]
    data = good.read_bytes()
    rng = random.Random(f"cache-{kind}")
    outcomes = []
    for case in range(16):
        path = tmp_path / f"{case}-{good.name}"
        path.write_bytes(damaged(data, rng, truncate=bool(case % 2)))
        try:
            check_file(kind, path)
        except Exception as error:  # noqa: BLE001
            one_line(error)
            assert str(error).startswith(f"{path}: "), str(error)
            outcomes.append("refused")
            continue
        if case % 2 and kind != "split":  # a truncated binary file never passes
            pytest.fail(f"{path}: truncated to {path.stat().st_size} of {len(data)} bytes, yet passed")
        outcomes.append("passed")
    assert outcomes.count("refused") >= 8, outcomes
