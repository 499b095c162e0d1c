from matprobe.config import job_options
from matprobe.io import run_logged
from matprobe.probes.landscape import evaluate_chunk

i = snakemake.input
run_logged(snakemake.log[0], evaluate_chunk, i.model, i.graphs, i.materials, i.split, i.directions, snakemake.output[0],
           job_options(snakemake.config, "landscape", snakemake.params.options), int(snakemake.wildcards.chunk), snakemake.params.chunks, threads=snakemake.threads)
