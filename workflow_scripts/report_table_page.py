from matprobe.io import run_logged
from matprobe.report.views import table_page

run_logged(snakemake.log[0], table_page, snakemake.input.csv, snakemake.output[0], snakemake.params.title, snakemake.params.note)
