"""Label-free geometry around the trained weights: how much a model's outputs on a set of crystals move when its
weights move, computed from the inputs alone, never from their labels.

Per set (the train subset, id_test, ood_test: the landscape's own crystals, those its directions.pt lists), over the
parameters the landscape moves (its directions' names):
- output sensitivity: the mean over crystals of ||∇_θ f(x)||², the trace of the Gauss–Newton matrix J^T J / n (J: the
  crystals' output gradients as rows), which is the empirical Fisher trace with unit residuals: no label enters;
- its top eigenvalue, by Lanczos from products v -> J^T (J v) / n: J^T u is the pullback of each crystal batch's
  outputs, J v the pullback's own transpose (the pullback is linear in u, so its vjp at any u is J v), both through
  the batch's graph built once and kept, as set_hvp keeps the Hessian's;
- the spread of the outputs along the landscape's saved directions: the mean |f_θ+αd(x) − f_θ(x)| at each α of
  `alphas` along each direction, i.e. how far the outputs move when the weights move in directions the ID landscape
  is drawn in.
Outputs are the model's own units (standardised targets for the models the workflow trains), so a set's values are
compared with the same model's on another set: the atlas reads each as the OOD value over the ID one.

The loss Hessian of the landscape stage weighs the same per-crystal curvature by the residuals (for an MAE, by their
signs), so a set's uniform bias shapes it; these quantities see only the inputs and the weights."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch.func import functional_call, vjp, vmap

from matprobe import MatprobeError
from matprobe.io import write_json
from matprobe.probes.hessian import extreme_eigenpairs, flatten, unflatten
from matprobe.probes.landscape import EvalSet, load_directions, load_landscape_inputs

log = logging.getLogger("matprobe.probes.sensitivity")

# the sets the atlas reads (ood_test over id_test) and the train subset as the reference the model was fitted on
SENSITIVITY_SETS = ("train", "id_test", "ood_test")


def output_pullbacks(model, eval_set: EvalSet, weights: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, object]]:
    """Per crystal batch of the set: its outputs (standardised predictions) at the trained weights and the pullback
    u -> J_b^T u of those outputs with respect to `weights`; the batch's forward graph is built here, once."""
    model.eval()  # batch-norm statistics fixed, as in the landscape
    pullbacks = []
    for prepared in eval_set.batches:
        def outputs(params, prepared=prepared):
            return functional_call(model, params, prepared.args, strict=False)["prediction"]

        prediction, pullback = vjp(outputs, weights)
        pullbacks.append((prediction.detach(), pullback))
    return pullbacks


def squared_gradient_norms(pullbacks) -> torch.Tensor:
    """||∇_θ f(x)||² of every crystal, in set order: the diagonal of J J^T, one pullback of a unit cotangent per crystal
    (on a CPU one crystal at a time costs less than a vmap over the batch's cotangents, whose pass is as wide as the
    batch)."""
    norms = []
    for prediction, pullback in pullbacks:
        for index in range(len(prediction)):
            unit = torch.zeros_like(prediction)
            unit[index] = 1.0
            norms.append(flatten(pullback(unit)[0]).detach().square().sum())
    return torch.stack(norms) if norms else torch.zeros(0)


def gauss_newton_product(pullbacks, weights: dict[str, torch.Tensor], n: int):
    """v -> J^T (J v) / n for a flat vector or a block of them (rows), summed batch by batch. J_b v is the transpose of
    the pullback: the pullback u -> J_b^T u is linear, so its own vjp (taken at u = 0) maps v to J_b v."""
    transposes = []
    for prediction, pullback in pullbacks:
        def pull(u, pullback=pullback):
            return pullback(u)[0]

        transposes.append(vjp(pull, torch.zeros_like(prediction))[1])

    def product(vectors: torch.Tensor) -> torch.Tensor:
        block = vectors[None] if vectors.dim() == 1 else vectors
        total = torch.zeros_like(block)
        for (_, pullback), transpose in zip(pullbacks, transposes):
            def one(vector, pullback=pullback, transpose=transpose):
                jv = transpose(unflatten(vector, weights))[0]
                return flatten(pullback(jv)[0])

            total += (one(block[0])[None] if len(block) == 1 else vmap(one)(block)).detach()
        total /= n
        return total[0] if vectors.dim() == 1 else total

    return product


def direction_spread(model, eval_set: EvalSet, weights: dict[str, torch.Tensor], directions: dict[str, dict],
                     alphas: list[float]) -> dict[str, dict[str, float]]:
    """Per direction and α: the mean over the set's crystals of |f_{θ+αd}(x) − f_θ(x)| (standardised units), through
    functional_call: the module's own weights never move."""
    model.eval()
    spread = {}
    with torch.no_grad():
        reference = [model(*prepared.args)["prediction"] for prepared in eval_set.batches]
        for name, direction in directions.items():
            spread[name] = {}
            for alpha in alphas:
                moved = {key: w + float(alpha) * direction[key] for key, w in weights.items()}
                total = sum(float((functional_call(model, moved, prepared.args, strict=False)["prediction"] - before).abs().sum())
                            for prepared, before in zip(eval_set.batches, reference))
                spread[name][f"{float(alpha):g}"] = total / eval_set.n
    return spread


def set_sensitivity(model, eval_set: EvalSet, weights: dict[str, torch.Tensor], directions: dict[str, dict],
                    options: dict, device) -> dict:
    """Everything sensitivity.json holds for one set."""
    started = time.perf_counter()
    pullbacks = output_pullbacks(model, eval_set, weights)
    norms = squared_gradient_norms(pullbacks)
    dim = sum(w.numel() for w in weights.values())
    pairs = extreme_eigenpairs(gauss_newton_product(pullbacks, weights, eval_set.n), dim,
                               options["sensitivity"]["lanczos_steps"], 1, options["seed"], device)
    del pullbacks  # the batches' graphs: the spread below needs none
    spread = direction_spread(model, eval_set, weights, directions, options["sensitivity"]["alphas"])
    values = [v for per_alpha in spread.values() for v in per_alpha.values()]
    return {"n": eval_set.n,
            "gradient_norm_sq_mean": float(norms.mean()), "gradient_norm_sq_median": float(norms.median()),
            "gauss_newton_top_eigenvalue": float(pairs["top"][0]),
            "direction_spread": spread, "direction_spread_mean": float(np.mean(values)),
            "seconds": round(time.perf_counter() - started, 2)}


def compute_sensitivity(model_path, graphs_path, materials_path, split_path, directions_path, out_path, options: dict,
                        threads: int = 1) -> dict:
    """The label-free geometry of one model on the landscape's sets (`SENSITIVITY_SETS`), along its saved directions.
    `options`: the landscape settings, with `sensitivity` (alphas, lanczos_steps, batch_size)."""
    settings = options["sensitivity"]
    model, record, sets, device = load_landscape_inputs(model_path, graphs_path, materials_path, split_path,
                                                        {**options, "batch_size": settings["batch_size"]}, threads)
    saved = load_directions(directions_path, device)
    if {name: s.ids for name, s in sets.items()} != saved["sets"]:
        raise MatprobeError(f"{directions_path}: its evaluation sets differ from this run's (landscape settings changed?)")
    parameters = dict(model.named_parameters())
    missing = [name for name in saved["names"] if name not in parameters]
    if missing:
        raise MatprobeError(f"{directions_path}: moves parameters the model in {model_path} does not have: {', '.join(missing[:3])}")
    weights = {name: parameters[name].detach().clone() for name in saved["names"]}
    directions = {"d1": saved["d1"], "d2": saved["d2"]}
    result = {"output": "prediction, in the model's own (standardised) units", "labels_read": False,
              "parameters": list(weights), "dimension": sum(w.numel() for w in weights.values()),
              "target_std": record.std, "alphas": [float(a) for a in settings["alphas"]],
              "lanczos_steps": settings["lanczos_steps"], "sets": {}}
    started = time.perf_counter()
    for name in SENSITIVITY_SETS:
        if name not in sets:
            continue
        summary = set_sensitivity(model, sets[name], weights, directions, options, device)
        result["sets"][name] = summary
        log.info("sensitivity %s: ||grad f||^2 %.4g, Gauss-Newton top %.4g, spread %.4g (%.1f s)", name,
                 summary["gradient_norm_sq_mean"], summary["gauss_newton_top_eigenvalue"], summary["direction_spread_mean"],
                 summary["seconds"])
    result["seconds"] = round(time.perf_counter() - started, 2)
    write_json(result, out_path)
    return result
