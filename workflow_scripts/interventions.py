from matprobe.io import run_logged
from matprobe.probes.interventions import run_interventions

i, p = snakemake.input, snakemake.params
run_logged(snakemake.log[0], run_interventions, i.model, i.materials, list(i.splits), dict(snakemake.output.items()), p.options, p.graph,
           threads=snakemake.threads)
