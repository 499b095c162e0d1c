from pathlib import Path

from matprobe.attribution import run_attribution
from matprobe.io import run_logged

i = snakemake.input
run_logged(snakemake.log[0], run_attribution, i.model, i.graphs, i.materials, i.split, i.predictions, i.latents, i.ph,
           Path(snakemake.output.summary).parent, snakemake.params.options, threads=snakemake.threads,
           topology_radius=snakemake.params.radius)
