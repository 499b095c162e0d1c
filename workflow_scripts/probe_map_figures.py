from matprobe.figures import probe_maps
from matprobe.io import run_logged

i = snakemake.input
run_logged(snakemake.log[0], probe_maps.probe_map_figure, snakemake.params.splits, i.maps, i.atoms, snakemake.wildcards.target,
           snakemake.output.maps)
