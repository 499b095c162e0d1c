from matprobe.io import run_logged
from matprobe.studies.summary import headline_table

run_logged(snakemake.log[0], headline_table, snakemake.params.runs, snakemake.input.metrics, snakemake.output.csv,
           snakemake.output.markdown)
