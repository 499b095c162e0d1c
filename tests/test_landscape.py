"""Loss landscapes and Hessian spectra, checked against the naive evaluation and the exact Hessian."""

import numpy as np
import pandas as pd
import pytest
import torch

from matprobe.config import validate_config
from matprobe.probes.flatness import flat_radius, landscape_metrics, merge_chunks
from matprobe.probes.hessian import extreme_eigenpairs, flatten, hutchinson_trace, set_hvp, spectral_density, unflatten
from matprobe.probes.landscape import (
    LandscapeEvaluator,
    compute_directions,
    direction_parameters,
    evaluate_chunk,
    grid_points,
    naive_point_loss,
    perturbed_state_dict,
    prepare_sets,
    random_directions,
)
from matprobe.prepare.sets import load_split_data
from matprobe.models.seam import load_trained

OPTIONS = validate_config({"landscape": {"grid_1d": {"points": 5}, "grid_2d": {"points": 5}, "max_crystals": 40, "batch_size": 16,
                                         "compile": "never", "hessian": {"lanczos_steps": 10, "trace_samples": 4, "slq_runs": 2, "seeds": 2}}})["landscape"]


@pytest.fixture(scope="module")
def loaded(small, tiny_model):
    torch.set_flush_denormal(True)
    trained = load_trained(tiny_model)
    sets = prepare_sets(trained, small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", 40, 0, 16, "cpu")
    return trained.module, trained.record, sets


def test_directions_are_filter_normalised_orthogonal_and_skip_biases(loaded):
    model, _, _ = loaded
    weights = direction_parameters(model)
    assert all(w.dim() > 1 for w in weights.values())
    assert not any("bn" in name or name.endswith("bias") for name in weights)
    d1, d2 = random_directions(weights, "filter", seed=3)
    for name, w in weights.items():
        torch.testing.assert_close(d1[name].reshape(w.shape[0], -1).norm(dim=1), w.reshape(w.shape[0], -1).norm(dim=1))
    assert abs(float(flatten(d1) @ flatten(d2))) < 1e-4 * float(flatten(d1).norm() * flatten(d2).norm())
    again, _ = random_directions(weights, "filter", seed=3)
    assert all(torch.equal(d1[n], again[n]) for n in d1)
    layer, _ = random_directions(weights, "layer", seed=3)
    for name, w in weights.items():
        assert float(layer[name].norm()) == pytest.approx(float(w.norm()), rel=1e-5)


@pytest.mark.parametrize("compile_model, per_pass", [(False, 1), (False, 3), (True, 1)])
def test_grid_values_equal_the_naive_evaluation(small, loaded, compile_model, per_pass):
    model, record, sets = loaded
    # the fast path runs on symmetry-reduced graphs, the naive one on the full graphs
    assert sum(s.evaluated_atoms for s in sets.values()) < 0.9 * sum(s.atoms for s in sets.values())
    weights = direction_parameters(model)
    d1, d2 = random_directions(weights, "filter", seed=0)
    points = [(0.0, 0.0), (0.5, -0.25), (-1.0, 1.0)]
    fast = LandscapeEvaluator(model, sets, weights, d1, d2, compile_model=compile_model, points_per_pass=per_pass)
    values = fast.evaluate(points)
    all_sets = load_split_data(small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", record.target).sets
    data = {n: [all_sets[n].graphs[all_sets[n].ids.index(i)] for i in s.ids] for n, s in sets.items()}
    reference_model = load_trained(small / "tiny" / "model.pt").module
    for (alpha, beta), row in zip(points, values):
        state = perturbed_state_dict(model, weights, d1, d2, alpha, beta)
        naive = naive_point_loss(reference_model, state, data, 7, record.mean, record.std)
        for name in naive:
            assert row[name] == pytest.approx(naive[name], rel=1e-5)
    # the trained weights are back in place afterwards
    for name, w in weights.items():
        assert torch.equal(dict(model.named_parameters())[name].detach(), w)


def test_chunked_grid_merges_to_the_one_job_grid(small, tiny_model, tmp_path):
    paths = {k: small / k for k in ("graphs.pt", "materials.parquet", "omit-O.json")}
    args = (tiny_model, paths["graphs.pt"], paths["materials.parquet"], paths["omit-O.json"])
    saved = compute_directions(*args, tmp_path / "directions.pt", OPTIONS)
    assert saved["batch_norm"].startswith("eval mode") and saved["kind"] == "random"
    one = evaluate_chunk(*args, tmp_path / "directions.pt", tmp_path / "one.parquet", OPTIONS, 0, 1, progress=False)
    parts = [evaluate_chunk(*args, tmp_path / "directions.pt", tmp_path / f"part{k}.parquet", OPTIONS, k, 3, progress=False) for k in range(3)]
    assert sum(len(p) for p in parts) == len(one)
    merged = merge_chunks([tmp_path / f"part{k}.parquet" for k in range(3)], tmp_path / "grid.parquet")
    single = merge_chunks([tmp_path / "one.parquet"], tmp_path / "grid1.parquet")
    pd.testing.assert_frame_equal(merged, single)
    assert set(merged.columns) >= {"alpha", "beta", "set", "loss", "mae"}
    assert len(merged) == len(grid_points(OPTIONS)) * 4 and set(merged["set"]) == {"train", "val", "id_test", "ood_test"}


def test_a_model_that_cannot_be_vmapped_is_evaluated_one_point_per_pass(small, tiny_model, tmp_path, monkeypatch, caplog):
    """points_per_pass > 1 on a model whose class sets supports_vmap = False (ALIGNN): one point per pass, said once
    in the chunk's log, the same grid as points_per_pass 1."""
    from matprobe.models.architectures import MODELS

    paths = {k: small / k for k in ("graphs.pt", "materials.parquet", "omit-O.json")}
    args = (tiny_model, paths["graphs.pt"], paths["materials.parquet"], paths["omit-O.json"])
    compute_directions(*args, tmp_path / "directions.pt", OPTIONS)
    one = evaluate_chunk(*args, tmp_path / "directions.pt", tmp_path / "one.parquet", OPTIONS, 0, 4, progress=False)
    monkeypatch.setattr(MODELS["cgcnn"][0], "supports_vmap", False, raising=False)
    caplog.set_level("INFO", logger="matprobe.probes.landscape")
    batched = evaluate_chunk(*args, tmp_path / "directions.pt", tmp_path / "three.parquet", {**OPTIONS, "points_per_pass": 3},
                             0, 4, progress=False)
    said = [r.getMessage() for r in caplog.records if "cannot be vmapped" in r.getMessage()]
    assert len(said) == 1 and "one per pass, not 3" in said[0]
    pd.testing.assert_frame_equal(batched, one)


def _exact_hessian(model, eval_set, weights):
    def loss(vector):
        params = unflatten(vector, weights)
        total = 0.0
        for prepared in eval_set.batches:
            prediction = torch.func.functional_call(model, params, prepared.args, strict=False)["prediction"]
            total = total + (prediction - prepared.y_std).abs().sum()
        return total / eval_set.n

    return torch.func.hessian(loss)(flatten(weights)).detach().double()


def test_hessian_estimates_match_the_exact_hessian_of_a_small_model(loaded):
    model, _, sets = loaded
    weights = direction_parameters(model)
    dim = sum(w.numel() for w in weights.values())
    hvp = set_hvp(model, sets["train"], weights)
    exact = _exact_hessian(model, sets["train"], weights)
    vector = torch.randn(dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(hvp(vector).double(), exact @ vector.double(), atol=1e-5, rtol=1e-4)
    eigenvalues = torch.linalg.eigvalsh(exact)
    pairs = extreme_eigenpairs(hvp, dim, steps=80, top_k=3, seed=0)
    np.testing.assert_allclose(pairs["top"], eigenvalues.flip(0)[:3].numpy(), rtol=1e-3, atol=1e-5)
    assert pairs["bottom"] == pytest.approx(float(eigenvalues[0]), rel=1e-3, abs=1e-5)
    top = pairs["top_vector"].double()
    assert float(top @ exact @ top) == pytest.approx(float(eigenvalues[-1]), rel=1e-3)
    mean, error = hutchinson_trace(hvp, dim, samples=300, seed=0)
    assert abs(mean - float(exact.trace())) < 4 * error
    density = spectral_density(hvp, dim, steps=30, runs=2, seed=0)
    assert np.trapezoid(density["density"], density["grid"]) == pytest.approx(1.0, abs=0.05)
    assert all(sum(w) == pytest.approx(1.0, abs=1e-6) for w in density["weights"])


def test_hessian_on_symmetry_reduced_graphs_equals_the_full_graphs(small, loaded):
    model, record, sets = loaded
    full = prepare_sets(load_trained(small / "tiny" / "model.pt"), small / "graphs.pt", small / "materials.parquet", small / "omit-O.json", 40, 0, 16, "cpu",
                        symmetry_reduction=False)
    assert full["train"].ids == sets["train"].ids and full["train"].evaluated_atoms > sets["train"].evaluated_atoms
    weights = direction_parameters(model)
    vector = torch.randn(sum(w.numel() for w in weights.values()), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(set_hvp(model, sets["train"], weights)(vector), set_hvp(model, full["train"], weights)(vector),
                               atol=1e-5, rtol=1e-4)


def test_flatness_metrics_on_a_known_quadratic_landscape():
    axis = np.linspace(-1, 1, 41)
    rows = []
    for set_name, curvature in (("id_test", 1.0), ("ood_test", 4.0)):
        for a in axis:
            rows.append({"grid": "1d", "alpha": a, "beta": 0.0, "set": set_name, "loss": 2.0 * (1 + curvature * a**2), "mae": 0.0})
        for a in axis:
            for b in axis:
                rows.append({"grid": "2d", "alpha": a, "beta": b, "set": set_name, "loss": 2.0 * (1 + curvature * (a**2 + b**2)), "mae": 0.0})
    metrics = landscape_metrics(pd.DataFrame(rows), None, {"flatness": {"epsilon": 0.3, "delta": 0.1, "divergence_radius": 0.5}})
    flat, sharp = metrics["sets"]["id_test"], metrics["sets"]["ood_test"]
    assert flat["loss_at_origin"] == 2.0
    assert flat["flat_radius_1d"] == pytest.approx(np.sqrt(0.1), abs=0.01)
    assert sharp["flat_radius_2d"] == pytest.approx(np.sqrt(0.1 / 4), abs=0.01)
    assert flat["epsilon_sharpness"] == pytest.approx(0.3**2, abs=0.01)
    assert sharp["epsilon_sharpness"] == pytest.approx(4 * 0.3**2, abs=0.04)
    assert flat["grid_minimum_offset"] == 0.0
    assert metrics["divergence_id_test_ood_test"] < 0.05  # same shape up to scale: nearly perfectly correlated
    assert metrics["divergence_radius"] == 0.5
    radius, censored = flat_radius(axis, np.ones_like(axis), 1.1)
    assert radius == 1.0 and censored


def test_divergence_sees_a_shifted_basin_under_a_shared_far_field():
    """Real landscapes climb to ~10^4 L0 at the grid's corners for every set; a basin whose minimum lies off the
    trained weights must still read as divergent, and a basin that is only steeper must not."""
    axis = np.linspace(-1, 1, 21)
    alpha, beta = np.meshgrid(axis, axis, indexing="ij")
    far_field = 1e4 * (alpha**2 + beta**2) ** 8  # 10^4 L0 at radius 1, negligible inside radius 0.5
    surfaces = {
        "train": 1 + alpha**2 + beta**2 + far_field,
        "id_test": 1 + 2 * (alpha**2 + beta**2) + far_field,  # steeper, same place
        "ood_test": 1 + 4 * ((alpha - 0.3) ** 2 + beta**2) + far_field,  # minimum 0.3 away from the trained weights
    }
    rows = [{"grid": "2d", "alpha": a, "beta": b, "set": name, "loss": value, "mae": 0.0}
            for name, surface in surfaces.items() for a, b, value in zip(alpha.ravel(), beta.ravel(), surface.ravel())]
    rows += [dict(row, grid="1d") for row in rows if row["beta"] == 0.0]
    metrics = landscape_metrics(pd.DataFrame(rows), None, {"flatness": {"epsilon": 0.3, "delta": 0.1, "divergence_radius": 0.5}})
    assert metrics["divergence_train_id_test"] < 0.02
    assert metrics["divergence_id_test_ood_test"] > 0.3
    assert metrics["divergence_train_ood_test"] > 0.3
    assert metrics["sets"]["ood_test"]["grid_minimum_offset"] == pytest.approx(0.3)


def test_the_batched_hessian_summary_equals_the_one_product_at_a_time_way(loaded):
    """Block Lanczos and chunked trace probes: the same runs from the same starts as one product at a time."""
    from matprobe.probes.hessian import hessian_summary

    model, _, sets = loaded
    weights = direction_parameters(model)
    hvp = set_hvp(model, sets["ood_test"], weights)
    dim = sum(w.numel() for w in weights.values())
    options = {"top_k": 2, "lanczos_steps": 12, "trace_samples": 5, "slq_runs": 2, "seeds": 2}
    plain = hessian_summary(hvp, dim, options, batched=False)
    batched = hessian_summary(hvp, dim, options, batched=True, trace_chunk=3)
    for key in ("top_eigenvalue_mean", "min_eigenvalue_mean", "trace_mean", "trace_std", "top_eigenvalue_std"):
        assert batched[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-6), key
    np.testing.assert_allclose(batched["density"]["density"], plain["density"]["density"], rtol=1e-3, atol=1e-6)
