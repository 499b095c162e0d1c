from matprobe.io import run_logged
from matprobe.report.views import interactive_views

inp = snakemake.input
run_logged(snakemake.log[0], interactive_views, snakemake.wildcards.dataset, snakemake.params.analysed, inp.grids, snakemake.params.runs,
           inp.predictions, inp.materials, snakemake.params.analysed, inp.knob_responses, inp.knob_summaries, snakemake.output[0],
           inp.atlas[0] if inp.atlas else None)
