"""Probe-map figures: per probe element, the omission model's maps beside its control's on one colour scale, each
crystal a column (OOD crystals beside their nearest ID neighbours), the atoms near the plane drawn in."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from matprobe.inputs.features import element_properties
from matprobe.figures.style import save, target_name, units

KIND_LABELS = {"held_out": "held-out", "most_electronegative": "most electronegative"}
ROLE_LABELS = {"ood_median": "OOD, median error", "ood_worst": "OOD, worst error",
               "id_neighbour_of_ood_median": "ID, nearest to the median", "id_neighbour_of_ood_worst": "ID, nearest to the worst"}


def probe_map_figure(splits: list[str], maps_paths: list, atoms_paths: list, target: str, out_png) -> None:
    maps = pd.concat([pd.read_parquet(path).assign(split=split) for split, path in zip(splits, maps_paths)], ignore_index=True)
    atoms = pd.concat([pd.read_parquet(path).assign(split=split) for split, path in zip(splits, atoms_paths)], ignore_index=True)
    crystals = list(dict.fromkeys(zip(maps["role"], maps["id"])))
    kinds = list(dict.fromkeys(maps["probe_kind"]))
    rows = [(kind, split) for kind in kinds for split in splits]
    fig, axes = plt.subplots(len(rows), len(crystals), figsize=(2.4 * len(crystals) + 1.0, 2.3 * len(rows)), squeeze=False,
                             constrained_layout=True)
    props = element_properties()
    symbols, radii = props["symbol"].to_dict(), props["covalent_radius"].to_dict()
    for kind in kinds:
        # one colour scale per kind of probe, over the omission's and the control's maps alike
        values = maps.loc[maps["probe_kind"] == kind, "probe_contribution"].dropna()
        low, high = np.quantile(values, [0.02, 0.98]) if len(values) else (0.0, 1.0)
        norm = matplotlib.colors.Normalize(low, high if high > low else low + 1e-9)
        for r, (row_kind, split) in enumerate(rows):
            if row_kind != kind:
                continue
            for c, (role, crystal_id) in enumerate(crystals):
                ax = axes[r, c]
                frame = maps[(maps["split"] == split) & (maps["probe_kind"] == kind) & (maps["id"] == crystal_id) & (maps["role"] == role)]
                if r == 0 or rows[r - 1][0] != kind:
                    ax.set_title(f"{ROLE_LABELS.get(role, role)}\n{crystal_id}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{split}\n{KIND_LABELS.get(kind, kind)} probe; in-plane y (Å)", fontsize=7)
                if frame.empty:
                    ax.axis("off")
                    continue
                element = frame["probe"].iloc[0]
                if "plane_x" not in frame or frame["plane_x"].isna().all():
                    # a 3-D grid: each column along c seen from above, at its most negative value (where it binds best)
                    frame = (frame.groupby(["frac_x", "frac_y"], as_index=False)
                             .agg(probe_contribution=("probe_contribution", "min"), plane_x=("x", "first"), plane_y=("y", "first"))
                             .rename(columns={"frac_x": "s", "frac_y": "t"}))
                side = int(round(np.sqrt(len(frame))))
                grid = frame.sort_values(["s", "t"])
                shape = (side, side)
                # rounded: along an axis square to the other, rounding noise would read as non-monotonic to pcolormesh
                ax.pcolormesh(grid["plane_x"].round(6).to_numpy().reshape(shape), grid["plane_y"].round(6).to_numpy().reshape(shape),
                              grid["probe_contribution"].to_numpy().reshape(shape), cmap="viridis", norm=norm, shading="nearest")
                near = atoms[(atoms["split"] == split) & (atoms["probe_kind"] == kind) & (atoms["id"] == crystal_id) & (atoms["role"] == role)]
                ax.scatter(near["plane_x"], near["plane_y"], s=[60 * radii.get(z, 1.0) ** 2 for z in near["Z"]], facecolors="white",
                           edgecolors="black", linewidths=0.6, zorder=3)
                for x, y, z in zip(near["plane_x"], near["plane_y"], near["Z"]):
                    ax.annotate(symbols.get(z, "?"), (x, y), fontsize=6, ha="center", va="center", zorder=4)
                ax.text(0.02, 0.98, f"probe {element}", transform=ax.transAxes, fontsize=6, va="top",
                        bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0})
                ax.set_aspect("equal")
                ax.tick_params(labelsize=6)
                if r == len(rows) - 1:
                    ax.set_xlabel("in-plane x (Å)", fontsize=7)
        columns = [axes[r, c] for r, (row_kind, _) in enumerate(rows) if row_kind == kind for c in range(len(crystals))]
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=columns, shrink=0.8,
                     label=f"{KIND_LABELS.get(kind, kind)} probe's contribution ({units(target)})")
    # short lines: the figure is read at the report's width, and a long title would set it
    fig.suptitle(f"Probe maps ({target_name(target)}): the contribution the model gives a probe atom\nat each point of a "
                 "plane (dark: most negative); omission above its control, one colour scale per probe kind;\nwhite discs: atoms "
                 "within 0.6 Å of the plane; blank: closer than the mask distance to an atom", fontsize=9)
    save(fig, out_png)
