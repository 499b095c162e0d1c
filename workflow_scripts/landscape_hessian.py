from matprobe.config import job_options
from matprobe.io import run_logged
from matprobe.probes.landscape import compute_hessian

i = snakemake.input
run_logged(snakemake.log[0], compute_hessian, i.model, i.graphs, i.materials, i.split, snakemake.output[0],
           job_options(snakemake.config, "landscape", snakemake.params.options), threads=snakemake.threads)
