"""An omission's probe maps against its control's (matprobe.probes.probe_maps makes them): a table job, kept apart
from the maps' module so that it starts without torch."""

from __future__ import annotations

import pandas as pd

from matprobe.io import write_json


def compare_maps(omission_maps, control_maps, out_path) -> dict:
    """The omission's maps against its control's on the same crystals, probes and positions: rank correlation of the
    probe contribution over the free positions, and the mean difference (omission minus control), per map."""
    omission, control = pd.read_parquet(omission_maps), pd.read_parquet(control_maps)
    keys = ["role", "id", "probe", "frac_x", "frac_y", "frac_z"]
    merged = omission.merge(control, on=keys, suffixes=("_omission", "_control"))
    merged = merged[~merged["masked_omission"]]
    rows = []
    for (role, crystal_id, probe), frame in merged.groupby(["role", "id", "probe"], sort=False):
        a, b = frame["probe_contribution_omission"], frame["probe_contribution_control"]
        rows.append({"role": role, "id": crystal_id, "probe": probe, "positions": int(len(frame)),
                     "spearman_probe_contribution": float(a.corr(b, method="spearman")),
                     "mean_difference_probe_contribution": float((a - b).mean()),
                     "mean_difference_total_change": float((frame["total_change_omission"] - frame["total_change_control"]).mean())})
    write_json({"maps": rows}, out_path)
    return {"maps": rows}
