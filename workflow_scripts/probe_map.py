from matprobe.io import run_logged
from matprobe.probes.probe_maps import compute_probe_maps

i, p = snakemake.input, snakemake.params
run_logged(snakemake.log[0], compute_probe_maps, i.model, i.omission_predictions, i.omission_latents, i.split, i.materials,
           dict(snakemake.output.items()), p.options, p.graph, threads=snakemake.threads)
