"""Hessian spectra of the loss over a whole evaluation set (not one mini-batch), from Hessian-vector products
(torch.func: reverse-over-reverse, `vjp` of `grad`, which is H v because H is symmetric; 2.5x faster here
than forward-over-reverse `jvp` of `grad`, whose forward-mode rules run unfused on CPU), summed batch by batch.

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
from torch.func import functional_call, grad, vjp

log = logging.getLogger("matprobe.hessian")


def flatten(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(vector: torch.Tensor, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, t in template.items():
        out[name] = vector[start : start + t.numel()].reshape(t.shape)
        start += t.numel()
    return out


def set_hvp(model, eval_set, weights: dict[str, torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> H v for the loss (MAE on standardised targets) over every crystal of `eval_set` (flat vectors)."""
    model.eval()  # batch-norm statistics fixed, as in the landscape

    def make_loss(prepared):
        def loss(params):
            prediction = functional_call(model, params, (prepared.batch, prepared.edge_inputs, prepared.neighbors), strict=False)["prediction"]
            return (prediction - prepared.y_std).abs().sum() / eval_set.n

        return loss

    losses = [make_loss(prepared) for prepared in eval_set.batches]

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        tangent = unflatten(vector, weights)
        total = torch.zeros_like(vector)
        for loss in losses:
            _, pullback = vjp(grad(loss), weights)
            total += flatten(pullback(tangent)[0]).detach()
        return total

    return hvp


def lanczos(hvp: Callable, dim: int, steps: int, generator: torch.Generator, device="cpu", dtype=torch.float32,
            start: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """`steps` Lanczos iterations with full reorthogonalisation. Returns the tridiagonal's diagonal and
    off-diagonal (float64) and the Lanczos basis (steps x dim)."""
    steps = min(steps, dim)
    if start is None:
        start = torch.randn(dim, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    q = start / start.norm()
    basis = torch.zeros(steps, dim, dtype=dtype, device=device)
    alphas, betas = [], []
    for k in range(steps):
        basis[k] = q
        w = hvp(q)
        alpha = float(w @ q)
        alphas.append(alpha)
        # full reorthogonalisation (twice is enough, Parlett's "twice is enough")
        for _ in range(2):
            w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)
        beta = float(w.norm())
        if k == steps - 1 or beta < 1e-10:
            basis = basis[: k + 1]
            break
        betas.append(beta)
        q = w / beta
    return np.array(alphas, dtype=np.float64), np.array(betas[: len(alphas) - 1], dtype=np.float64), basis


def ritz(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the Lanczos tridiagonal."""
    tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    return np.linalg.eigh(tridiagonal)


def extreme_eigenpairs(hvp, dim: int, steps: int, top_k: int, seed: int, device="cpu") -> dict:
    """The `top_k` largest eigenvalues, the smallest, and the eigenvectors of the largest and smallest."""
    generator = torch.Generator().manual_seed(seed)
    alphas, betas, basis = lanczos(hvp, dim, steps, generator, device=device)
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


def hutchinson_trace(hvp, dim: int, samples: int, seed: int, device="cpu") -> tuple[float, float]:
    """Mean and standard error of v^T H v over Rademacher probes v."""
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for _ in range(samples):
        v = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(device=device, dtype=torch.float32)
        estimates.append(float(v @ hvp(v)))
    estimates = np.array(estimates)
    return float(estimates.mean()), float(estimates.std(ddof=1) / np.sqrt(len(estimates))) if len(estimates) > 1 else float("nan")


def spectral_density(hvp, dim: int, steps: int, runs: int, seed: int, device="cpu", grid_points: int = 256) -> dict:
    """Stochastic Lanczos quadrature: nodes and weights of each run, and a Gaussian-broadened density."""
    generator = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    for _ in range(runs):
        start = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(device=device, dtype=torch.float32)
        alphas, betas, _ = lanczos(hvp, dim, steps, generator, device=device, start=start)
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
    density /= runs * sigma * np.sqrt(2 * np.pi)
    return {"grid": grid.tolist(), "density": density.tolist(), "sigma": sigma,
            "nodes": [n.tolist() for n in nodes], "weights": [w.tolist() for w in weights]}


def hessian_summary(hvp, dim: int, options: dict, device="cpu") -> dict:
    """Everything hessian.json holds for one set; spreads are over `options['seeds']` random starts."""
    seeds = list(range(int(options["seeds"])))
    runs = [extreme_eigenpairs(hvp, dim, options["lanczos_steps"], options["top_k"], seed, device) for seed in seeds]
    top = np.array([run["top"][0] for run in runs])
    bottom = np.array([run["bottom"] for run in runs])
    traces = [hutchinson_trace(hvp, dim, options["trace_samples"], 1000 + seed, device) for seed in seeds]
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
        "density": spectral_density(hvp, dim, options["lanczos_steps"], options["slq_runs"], 2000, device),
        "_vectors": (runs[0]["top_vector"], runs[0]["bottom_vector"]),
    }
