from matprobe.io import run_logged
from matprobe.prepare.splits import split_stats

run_logged(snakemake.log[0], split_stats, snakemake.input.materials, snakemake.input.splits, snakemake.output[0])
