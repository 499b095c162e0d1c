from matprobe.io import run_logged
from matprobe.probes.probe_map_comparison import compare_maps

run_logged(snakemake.log[0], compare_maps, snakemake.input.omission, snakemake.input.control, snakemake.output[0])
