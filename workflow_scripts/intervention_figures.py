from matprobe.figures import interventions, style
from matprobe.io import run_logged

i, o, target = snakemake.input, snakemake.output, snakemake.wildcards.target


def make_all():
    interventions.strain_figure(snakemake.params.splits, i.curves, i.summaries, target, o.strain)
    interventions.responses_figure(snakemake.params.splits, i.curves, target, o.responses)


with style.naming_run(snakemake.wildcards):
    run_logged(snakemake.log[0], make_all)
