from matprobe.figures import style, attribution
from matprobe.io import run_logged
from matprobe.prepare.splits import load_split

i, o, target = snakemake.input, snakemake.output, snakemake.wildcards.target


def make_all():
    omitted = load_split(i.split).omitted_elements
    attribution.periodic_tables(i.elements, i.predictions, omitted, target, o.periodic)
    attribution.structures_3d(i.atoms, i.materials, omitted, target, o.structures)
    attribution.element_map(i.element_pca, o.element_map)
    attribution.trim_bars(i.trim_summary, target, o.trim)


with style.naming_run(snakemake.wildcards):
    run_logged(snakemake.log[0], make_all)
