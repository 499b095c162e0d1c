from matprobe.io import run_logged
from matprobe.probes.path_homology import compute_path_homology

o, options = snakemake.output, snakemake.params.options
run_logged(snakemake.log[0], compute_path_homology, snakemake.input[0], o.crystals, o.elements, o.summary, radius=options["radius"],
           step=options["step"], max_dim=options["max_dim"], order=options["order"], threads=snakemake.threads, out_atoms=o.atoms,
           max_paths=options["max_paths"])
