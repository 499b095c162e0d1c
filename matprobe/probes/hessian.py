"""Hessian spectra of the loss over a whole evaluation set (not one mini-batch), from Hessian-vector products
(torch.func: reverse-over-reverse, `vjp` of `grad`, which is H v because H is symmetric; 2.5x faster here
than forward-over-reverse `jvp` of `grad`, whose forward-mode rules run unfused on CPU), summed batch by batch.

Every estimate below is a set of independent runs (Lanczos from several random starts, Rademacher probes), so the
products they need at one step can be taken together: `set_hvp` maps a block of vectors at once, sharing each
crystal batch's forward pass and gradient among them (`vmap` over the pullback), and `hessian_summary` runs all its
Lanczos runs as one block and its trace probes in chunks. The runs and their starts are those of the one-at-a-time
way (`batched=False`), which stays as the reference the tests compare with.

- top and bottom eigenvalues and eigenvectors: Lanczos with full reorthogonalisation;
- trace: Hutchinson's estimator with Rademacher probes;
- spectral density: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019),
  Ritz values as nodes and squared first components of the Ritz vectors as weights, broadened by Gaussians.
The Hessian is taken with respect to the same parameters the landscape directions move."""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call, grad, vjp, vmap

log = logging.getLogger("matprobe.probes.hessian")


def flatten(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(vector: torch.Tensor, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, t in template.items():
        out[name] = vector[start : start + t.numel()].reshape(t.shape)
        start += t.numel()
    return out


def set_hvp(model, eval_set, weights: dict[str, torch.Tensor], reuse_graphs: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> H v for the loss (MAE on standardised targets) over every crystal of `eval_set`: a flat vector, or a
    block of them (rows). With `reuse_graphs`, each crystal batch's forward pass and gradient are computed once, at
    the first product, and kept: every product after it is one backward pass through them, at the memory of the
    set's gradient graphs; without, they are rebuilt for each product (the reference way)."""
    model.eval()  # batch-norm statistics fixed, as in the landscape

    def make_loss(prepared):
        def loss(params):
            prediction = functional_call(model, params, prepared.args, strict=False)["prediction"]
            return (prediction - prepared.y_std).abs().sum() / eval_set.n

        return loss

    losses = [make_loss(prepared) for prepared in eval_set.batches]
    cached = []  # each crystal batch's gradient graph, built at the first product and reused by every later one

    def pullbacks():
        if not reuse_graphs:  # one batch's graph at a time, rebuilt for every product
            return (vjp(grad(loss), weights)[1] for loss in losses)
        if not cached:
            cached.extend(vjp(grad(loss), weights)[1] for loss in losses)
        return cached

    def hvp(vectors: torch.Tensor) -> torch.Tensor:
        block = vectors[None] if vectors.dim() == 1 else vectors
        total = torch.zeros_like(block)
        for pullback in pullbacks():
            def product(vector, pullback=pullback):
                return flatten(pullback(unflatten(vector, weights))[0])

            total += (product(block[0])[None] if len(block) == 1 else vmap(product)(block)).detach()
        return total[0] if vectors.dim() == 1 else total

    return hvp


def lanczos_block(hvp: Callable, starts: torch.Tensor, steps: int) -> list[tuple[np.ndarray, np.ndarray, torch.Tensor]]:
    """`steps` Lanczos iterations with full reorthogonalisation from each start vector (rows of `starts`), all runs
    advanced together: one block product per step. Per run: the tridiagonal's diagonal and off-diagonal (float64) and
    its Lanczos basis (steps x dim); a run whose Krylov space is exhausted stops there."""
    runs, dim = starts.shape
    steps = min(steps, dim)
    q = starts / starts.norm(dim=1, keepdim=True)
    basis = torch.zeros(runs, steps, dim, dtype=starts.dtype, device=starts.device)
    alphas, betas = np.zeros((runs, steps)), np.zeros((runs, steps))
    length = np.full(runs, steps)
    for k in range(steps):
        basis[:, k] = q
        w = hvp(q)
        alphas[:, k] = (w * q).sum(dim=1).double().cpu().numpy()
        # full reorthogonalisation (twice is enough, Parlett's "twice is enough")
        for _ in range(2):
            w = w - torch.einsum("rkd,rk->rd", basis[:, : k + 1], torch.einsum("rkd,rd->rk", basis[:, : k + 1], w))
        norms = w.norm(dim=1)
        betas[:, k] = norms.double().cpu().numpy()
        exhausted = (betas[:, k] < 1e-10) & (length == steps)
        length[exhausted] = k + 1
        if k == steps - 1 or (length < steps).all():
            break
        q = w / norms.clamp_min(1e-30)[:, None]
    return [(alphas[r, : length[r]], betas[r, : length[r] - 1], basis[r, : length[r]]) for r in range(runs)]


def ritz(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the Lanczos tridiagonal."""
    tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    return np.linalg.eigh(tridiagonal)


def _extremes(run, top_k: int) -> dict:
    alphas, betas, basis = run
    values, vectors = ritz(alphas, betas)
    basis64 = basis.double().cpu()
    top_vector = basis64.T @ torch.from_numpy(vectors[:, -1])
    bottom_vector = basis64.T @ torch.from_numpy(vectors[:, 0])
    return {
        "top": values[::-1][:top_k].tolist(),
        "bottom": float(values[0]),
        "top_vector": (top_vector / top_vector.norm()).float(),
        "bottom_vector": (bottom_vector / bottom_vector.norm()).float(),
    }


def _gaussian_start(dim: int, seed: int, device) -> torch.Tensor:
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device=device, dtype=torch.float32)


def _rademacher(dim: int, count: int, seed: int, device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([(torch.randint(0, 2, (dim,), generator=generator) * 2 - 1) for _ in range(count)]).to(device=device, dtype=torch.float32)


def extreme_eigenpairs(hvp, dim: int, steps: int, top_k: int, seed: int, device="cpu") -> dict:
    """The `top_k` largest eigenvalues, the smallest, and the eigenvectors of the largest and smallest."""
    return _extremes(lanczos_block(hvp, _gaussian_start(dim, seed, device)[None], steps)[0], top_k)


def _trace_estimates(hvp, probes: torch.Tensor, chunk: int) -> np.ndarray:
    """v^T H v of each probe (rows), `chunk` probes per block product (1: one at a time)."""
    return np.concatenate([(block * hvp(block)).sum(dim=1).double().cpu().numpy() for block in probes.split(chunk)])


def _mean_and_error(estimates: np.ndarray) -> tuple[float, float]:
    return float(estimates.mean()), float(estimates.std(ddof=1) / np.sqrt(len(estimates))) if len(estimates) > 1 else float("nan")


def hutchinson_trace(hvp, dim: int, samples: int, seed: int, device="cpu") -> tuple[float, float]:
    """Mean and standard error of v^T H v over Rademacher probes v."""
    return _mean_and_error(_trace_estimates(hvp, _rademacher(dim, samples, seed, device), chunk=1))


def _density(runs, grid_points: int = 256) -> dict:
    """Stochastic Lanczos quadrature from runs started at Rademacher vectors: Ritz values as nodes, squared first
    components of the Ritz vectors as weights, and a Gaussian-broadened density."""
    nodes, weights = [], []
    for alphas, betas, _ in runs:
        values, vectors = ritz(alphas, betas)
        nodes.append(values)
        weights.append(vectors[0] ** 2)
    all_nodes = np.concatenate(nodes)
    low, high = float(all_nodes.min()), float(all_nodes.max())
    pad = 0.05 * max(high - low, 1e-12)
    grid = np.linspace(low - pad, high + pad, grid_points)
    sigma = max(high - low, 1e-12) / 100.0
    density = np.zeros_like(grid)
    for run_nodes, run_weights in zip(nodes, weights):
        density += (run_weights[None, :] * np.exp(-((grid[:, None] - run_nodes[None, :]) ** 2) / (2 * sigma**2))).sum(axis=1)
    density /= len(runs) * sigma * np.sqrt(2 * np.pi)
    return {"grid": grid.tolist(), "density": density.tolist(), "sigma": sigma,
            "nodes": [n.tolist() for n in nodes], "weights": [w.tolist() for w in weights]}


def spectral_density(hvp, dim: int, steps: int, runs: int, seed: int, device="cpu", grid_points: int = 256) -> dict:
    """Stochastic Lanczos quadrature: nodes and weights of each run, and a Gaussian-broadened density."""
    starts = _rademacher(dim, runs, seed, device)
    return _density([lanczos_block(hvp, start[None], steps)[0] for start in starts], grid_points)


def hessian_summary(hvp, dim: int, options: dict, device="cpu", batched: bool = True, trace_chunk: int = 16) -> dict:
    """Everything hessian.json holds for one set; spreads are over `options['seeds']` random starts. Batched, every
    Lanczos run (the eigenvalue runs and the density's) advances in one block and the trace probes go `trace_chunk`
    at a time; `batched=False` runs the same runs from the same starts one product at a time."""
    seeds = list(range(int(options["seeds"])))
    steps = options["lanczos_steps"]
    eigen_starts = torch.stack([_gaussian_start(dim, seed, device) for seed in seeds])
    density_starts = _rademacher(dim, options["slq_runs"], 2000, device)
    starts = torch.cat([eigen_starts, density_starts])
    lanczos_runs = lanczos_block(hvp, starts, steps) if batched else [lanczos_block(hvp, start[None], steps)[0] for start in starts]
    runs = [_extremes(run, options["top_k"]) for run in lanczos_runs[: len(seeds)]]
    top = np.array([run["top"][0] for run in runs])
    bottom = np.array([run["bottom"] for run in runs])
    traces = [_mean_and_error(_trace_estimates(hvp, _rademacher(dim, options["trace_samples"], 1000 + seed, device),
                                               trace_chunk if batched else 1)) for seed in seeds]
    trace_means = np.array([t[0] for t in traces])
    return {
        "parameters": dim,
        "top_eigenvalues": runs[0]["top"],
        "top_eigenvalue_mean": float(top.mean()),
        "top_eigenvalue_std": float(top.std(ddof=1)) if len(top) > 1 else 0.0,
        "min_eigenvalue_mean": float(bottom.mean()),
        "min_eigenvalue_std": float(bottom.std(ddof=1)) if len(bottom) > 1 else 0.0,
        "trace_mean": float(trace_means.mean()),
        "trace_std": float(trace_means.std(ddof=1)) if len(trace_means) > 1 else traces[0][1],
        "seeds": len(seeds),
        "density": _density(lanczos_runs[len(seeds):]),
        "_vectors": (runs[0]["top_vector"], runs[0]["bottom_vector"]),
    }
