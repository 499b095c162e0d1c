import json

from matprobe import figures
from matprobe.io import run_logged

i, o, target = snakemake.input, snakemake.output, snakemake.wildcards.target


def make_all():
    split = json.loads(open(i.split).read())
    omitted = split["omitted_elements"]
    figures.landscape_2d(i.grid, target, o.landscape_2d, o.landscape_3d)
    figures.hessian_density(i.hessian, o.hessian)
    figures.periodic_tables(i.elements, i.predictions, omitted, target, o.periodic)
    figures.structures_3d(i.atoms, i.materials, omitted, target, o.structures)
    figures.element_map(i.element_pca, o.element_map)
    figures.trim_bars(i.trim_summary, target, o.trim)
    figures.topology_figure(i.topology, i.atoms, i.materials, snakemake.params.radius, o.topology)


run_logged(snakemake.log[0], make_all)
