from matprobe.figures import style, knobs
from matprobe.io import run_logged

i, o, target = snakemake.input, snakemake.output, snakemake.wildcards.target


def make_all():
    knobs.knob_responses(snakemake.params.splits, i.summaries, i.responses, i.checks, target, o.responses)
    knobs.latent_map(i.atoms, target, o.latent)
    knobs.knob_crystal(snakemake.params.splits, i.crystal, i.checks, target, o.crystal)


with style.naming_run(snakemake.wildcards):
    run_logged(snakemake.log[0], make_all)
