from matprobe import figures
from matprobe.io import run_logged

run_logged(snakemake.log[0], figures.parity, snakemake.input.predictions, snakemake.wildcards.target, snakemake.output.parity)
