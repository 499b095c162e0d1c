from matprobe.io import run_logged
from matprobe.studies.summary import summarise_runs

i, p = snakemake.input, snakemake.params
run_logged(snakemake.log[0], summarise_runs, p.runs, i.models, p.analysed, i.landscapes, i.attributions,
           snakemake.output.parquet, snakemake.output.csv)
