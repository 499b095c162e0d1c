"""The process-wide torch settings every stage starts with: CPU threads, denormal flushing, deterministic
algorithms and the device, set in one place so that training, landscapes, attribution and the probes compute
alike. None of them changes what a result means, so none of them is part of a checkpoint's fingerprint."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    threads: int = 1
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N
    deterministic: bool = True

    @classmethod
    def from_options(cls, options: dict, threads: int | None = None) -> "Runtime":
        """From a config section that has `device` (and optionally `deterministic`); `threads` from the rule."""
        return cls(threads=int(threads if threads is not None else options.get("threads", 1)),
                   device=str(options.get("device", "auto")), deterministic=bool(options.get("deterministic", True)))

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def apply(self) -> torch.device:
        """Set the process's torch state and return the device to compute on."""
        torch.set_num_threads(max(1, self.threads))
        # Gaussian tails underflow into float32 denormals, which make CPU matrix products several times slower
        # (shared/notes/performance.md); values that small carry no information.
        torch.set_flush_denormal(True)
        device = self.torch_device()
        if self.deterministic:
            # CUDA has ops without a deterministic kernel (index_add's backward): warn there instead of failing
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        return device
