from pathlib import Path

from matprobe.io import run_logged
from matprobe.summary import summarise_runs

i = snakemake.input
run_logged(snakemake.log[0], summarise_runs, [Path(p).parent for p in i.models], [Path(p).parent for p in i.landscapes],
           [Path(p).parent for p in i.attributions], snakemake.output.parquet, snakemake.output.csv)
