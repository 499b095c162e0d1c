from matprobe.figures import style, training
from matprobe.io import run_logged

with style.naming_run(snakemake.wildcards):
    run_logged(snakemake.log[0], training.parity, snakemake.input.predictions, snakemake.wildcards.target, snakemake.output.parity)
