from matprobe.io import run_logged
from matprobe.report.views import findings_html

run_logged(snakemake.log[0], findings_html, snakemake.input.headlines, snakemake.output[0], snakemake.input.atlases)
