"""Label-free geometry (matprobe.probes.sensitivity) against brute force on a tiny model, its independence of the labels,
and its place in the atlas's hypothesis test beside the label-free baselines."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from matprobe.config import validate_config
from matprobe.models.seam import load_trained
from matprobe.prepare.sets import load_split_data
from matprobe.probes.hessian import extreme_eigenpairs, flatten
from matprobe.probes.landscape import compute_directions, direction_parameters, perturbed_state_dict, prepare_sets, random_directions
from matprobe.probes.sensitivity import (
    SENSITIVITY_SETS,
    compute_sensitivity,
    direction_spread,
    gauss_newton_product,
    output_pullbacks,
    squared_gradient_norms,
)

SENSITIVITY = {"alphas": [-0.5, 0.5], "lanczos_steps": 10, "batch_size": 8}
OPTIONS = {**validate_config({"landscape": {"grid_1d": {"points": 3}, "grid_2d": {"points": 3}, "max_crystals": 24, "batch_size": 8,
                                            "compile": "never", "device": "cpu"}})["landscape"], "sensitivity": SENSITIVITY}


@pytest.fixture(scope="module")
def prepared(small, tiny_model):
    torch.set_flush_denormal(True)
    trained = load_trained(tiny_model)
    sets = prepare_sets(trained, small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", 24, 0, 8, "cpu")
    return trained, sets


def brute_force_jacobian(small, trained, eval_set, weights) -> torch.Tensor:
    """J (crystals × parameters): each crystal's output gradient by itself, one autograd pass per crystal on its full
    graph (no symmetry reduction, no batching, no torch.func)."""
    data = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", trained.record.target).sets
    items = {i: g for s in data.values() for i, g in zip(s.ids, s.graphs)}
    module = load_trained(small / "tiny" / "model.pt").module.eval()
    parameters = dict(module.named_parameters())
    rows = []
    for crystal in eval_set.ids:
        batch = next(trained.batches([items[crystal]], 1))
        prediction = module(batch)["prediction"]
        grads = torch.autograd.grad(prediction.sum(), [parameters[name] for name in weights])
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows).double()


def test_the_gauss_newton_trace_is_the_sum_of_squared_per_crystal_gradient_norms(small, prepared):
    trained, sets = prepared
    weights = direction_parameters(trained.module)
    for name in ("id_test", "ood_test"):
        jacobian = brute_force_jacobian(small, trained, sets[name], weights)
        norms = squared_gradient_norms(output_pullbacks(trained.module, sets[name], weights)).double()
        assert len(norms) == sets[name].n > 8  # more than one batch
        torch.testing.assert_close(norms, jacobian.square().sum(dim=1), rtol=2e-4, atol=1e-8)
        # the trace of J^T J / n is their mean
        assert float(norms.mean()) == pytest.approx(float(torch.trace(jacobian.T @ jacobian)) / sets[name].n, rel=2e-4)


def test_the_gauss_newton_product_and_its_top_eigenvalue_match_an_explicit_jacobian(small, prepared):
    trained, sets = prepared
    weights = direction_parameters(trained.module)
    eval_set = sets["ood_test"]
    jacobian = brute_force_jacobian(small, trained, eval_set, weights)
    matrix = jacobian.T @ jacobian / eval_set.n
    product = gauss_newton_product(output_pullbacks(trained.module, eval_set, weights), weights, eval_set.n)
    vectors = torch.randn(3, matrix.shape[0], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(product(vectors).double(), vectors.double() @ matrix, rtol=1e-4, atol=1e-5)  # a block
    torch.testing.assert_close(product(vectors[0]).double(), matrix @ vectors[0].double(), rtol=1e-4, atol=1e-5)  # one vector
    exact = torch.linalg.eigvalsh(matrix)
    top = extreme_eigenpairs(product, matrix.shape[0], SENSITIVITY["lanczos_steps"], 1, 0)["top"][0]
    assert top == pytest.approx(float(exact[-1]), rel=1e-4)
    assert float(exact[-1]) > 1.5 * float(exact[-2])  # a top eigenvalue apart from the next: the check has teeth


def test_the_direction_spread_is_the_mean_output_change_along_each_direction(small, prepared):
    trained, sets = prepared
    weights = direction_parameters(trained.module)
    d1, d2 = random_directions(weights, "filter", seed=2)
    eval_set = sets["ood_test"]
    spread = direction_spread(trained.module, eval_set, weights, {"d1": d1, "d2": d2}, [-0.5, 0.0, 0.5])
    assert spread["d1"]["0"] == 0.0 and spread["d1"]["0.5"] > 0
    # independently: perturbed weights loaded into a fresh module, predictions on the full graphs in physical units
    data = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", trained.record.target).sets
    items = {i: g for s in data.values() for i, g in zip(s.ids, s.graphs)}
    crystals = [items[i] for i in eval_set.ids]
    reference = load_trained(small / "tiny" / "model.pt")
    before = reference.predict(crystals).prediction
    for name, direction in (("d1", d1), ("d2", d2)):
        for alpha in (-0.5, 0.5):
            reference.module.load_state_dict(perturbed_state_dict(trained.module, weights, direction, direction, alpha, 0.0))
            moved = reference.predict(crystals).prediction
            expected = np.abs(moved - before).mean() / trained.record.std  # standardised units, as the stage reports
            assert spread[name][f"{alpha:g}"] == pytest.approx(expected, rel=1e-4)
    for key, w in weights.items():  # the module the stage was given still holds its trained weights
        assert torch.equal(dict(trained.module.named_parameters())[key].detach(), w)


def test_no_label_is_read(small, tiny_model, tmp_path):
    directions = tmp_path / "directions.pt"
    compute_directions(tiny_model, small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", directions, OPTIONS)
    shuffled = pd.read_parquet(small / "materials.parquet")
    target = load_trained(tiny_model).record.target
    shuffled[target] = np.random.default_rng(0).permutation(shuffled[target].to_numpy()) * 3.0 - 1.0
    shuffled.to_parquet(tmp_path / "shuffled.parquet")
    results = {}
    for name, materials in (("labels", small / "materials.parquet"), ("shuffled", tmp_path / "shuffled.parquet")):
        results[name] = compute_sensitivity(tiny_model, small / "graphs.pt", materials, small / "omit-O.json", directions,
                                            tmp_path / f"{name}.json", OPTIONS)
    # the labels the sets carry did change (so the comparison below could fail)
    labelled = {name: load_split_data(small / "graphs.pt", m, small / "omit-O.json", target).sets["ood_test"].y
                for name, m in (("labels", small / "materials.parquet"), ("shuffled", tmp_path / "shuffled.parquet"))}
    assert not np.allclose(labelled["labels"], labelled["shuffled"])
    assert list(results["labels"]["sets"]) == list(SENSITIVITY_SETS)
    for set_name in SENSITIVITY_SETS:
        kept, other = results["labels"]["sets"][set_name], results["shuffled"]["sets"][set_name]
        for key in ("gradient_norm_sq_mean", "gradient_norm_sq_median", "gauss_newton_top_eigenvalue", "direction_spread",
                    "direction_spread_mean", "n"):
            assert kept[key] == other[key], (set_name, key)
        assert kept["gauss_newton_top_eigenvalue"] > 0 and kept["direction_spread_mean"] > 0
    written = json.loads((tmp_path / "labels.json").read_text())
    assert written["labels_read"] is False and written["dimension"] == sum(w.numel() for w in direction_parameters(load_trained(tiny_model).module).values())


def test_directions_of_other_sets_are_refused_in_one_line(small, tiny_model, tmp_path):
    from matprobe import MatprobeError

    directions = tmp_path / "directions.pt"
    compute_directions(tiny_model, small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", directions,
                       {**OPTIONS, "max_crystals": 12})
    with pytest.raises(MatprobeError, match="directions.pt: its evaluation sets differ"):
        compute_sensitivity(tiny_model, small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", directions,
                            tmp_path / "out.json", OPTIONS)


# ---- the atlas: label-free geometry among the predictors ---------------------------------------------------------


def _sensitivity_file(path, ood: dict, ident: dict):
    sets = {"ood_test": ood, "id_test": ident, "train": ident}
    path.write_text(json.dumps({"sets": sets}))
    return path


def test_the_atlas_reads_each_sensitivity_as_the_ood_value_over_the_id_value(tmp_path):
    from matprobe.studies.atlas import add_sensitivity

    seeds = pd.DataFrame({"dataset": "d", "target": "t", "split": ["omit-O", "omit-Fe"], "model": "m", "seed": [0, 0]})
    path = _sensitivity_file(tmp_path / "s.json",
                             {"gradient_norm_sq_mean": 6.0, "gauss_newton_top_eigenvalue": 9.0, "direction_spread_mean": 0.2},
                             {"gradient_norm_sq_mean": 3.0, "gauss_newton_top_eigenvalue": 3.0, "direction_spread_mean": 0.4})
    out = add_sensitivity(seeds, [{"dataset": "d", "target": "t", "split": "omit-O", "model": "m", "seed": 0}], [path])
    row = out.set_index("split").loc["omit-O"]
    assert (row["output_sensitivity_ratio"], row["gauss_newton_top_ratio"], row["direction_spread_ratio"]) == pytest.approx((2.0, 3.0, 0.5))
    assert out.set_index("split").loc["omit-Fe", ["output_sensitivity_ratio", "gauss_newton_top_ratio"]].isna().all()


def test_label_free_geometry_is_judged_against_the_label_free_baselines_only():
    from matprobe.studies.atlas import BASELINES, LABELS, PREDICTORS, hypothesis_table

    sensitivity = [p for p, kind in PREDICTORS.items() if kind == "sensitivity"]
    assert set(sensitivity) == {"output_sensitivity_ratio", "gauss_newton_top_ratio", "direction_spread_ratio"}
    assert all(LABELS[p] == "label-free" for p in sensitivity)
    rng = np.random.default_rng(7)
    n = 14
    failure = np.exp(rng.normal(0.5, 0.5, n))
    atlas = pd.DataFrame({"dataset": "d", "target": "t", "model": "m", "split": [f"omit-E{k}" for k in range(n)],
                          "ood_over_control": failure,
                          "gauss_newton_top_ratio": failure + rng.normal(0, 0.02, n),  # ranks the failures all but perfectly
                          "output_sensitivity_ratio": rng.random(n), "direction_spread_ratio": rng.random(n),
                          "ood_over_id": failure * 2,  # a label-aware baseline that restates the failure: not this kind's
                          "bias_over_mae": rng.random(n), "same_sign_share": rng.random(n),
                          "latent_knn_distance": rng.random(n), "latent_distance_ratio": rng.random(n),
                          "n_ood": rng.integers(100, 900, n)})
    table = hypothesis_table(atlas, resamples=300).set_index("predictor")
    row = table.loc["gauss_newton_top_ratio"]
    assert row["kind"] == "sensitivity" and row["labels"] == "label-free"
    assert row["best_baseline"] in BASELINES["label-free"] and row["baselines_omissions"] == n
    assert row["gain_over_baselines"] > 0 and row["beats_baselines"]  # the restating label-aware baseline is not its rival
    assert not table.loc["output_sensitivity_ratio", "beats_baselines"]
