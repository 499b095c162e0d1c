from matprobe.figures import training
from matprobe.io import run_logged

run_logged(snakemake.log[0], training.parity, snakemake.input.predictions, snakemake.wildcards.target, snakemake.output.parity)
