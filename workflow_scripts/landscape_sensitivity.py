from matprobe.config import job_options
from matprobe.io import run_logged
from matprobe.probes.sensitivity import compute_sensitivity

i = snakemake.input
run_logged(snakemake.log[0], compute_sensitivity, i.model, i.graphs, i.materials, i.split, i.directions, snakemake.output[0],
           job_options(snakemake.config, "landscape", snakemake.params.options), threads=snakemake.threads)
