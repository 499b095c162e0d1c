from matprobe.io import run_logged
from matprobe.probes.flatness import merge_chunks

run_logged(snakemake.log[0], merge_chunks, list(snakemake.input), snakemake.output[0])
