# Stage 5c: generative knobs, per analysed model (it reads the atom-level topological descriptors of the dataset, and
# the same run's physical interventions, the crystal's answer its knobs are checked against).

KNOB_DIR = L.run_dir("knobs")


rule knobs:
    input:
        model=L.run_file("models", "model"),
        model_verified=verified(L.run_file("models", "model")),
        **run_inputs(),
        ph_atoms=f"{L.topology_dir}/ph_atoms.parquet",
        directed_atoms=f"{L.path_homology_dir}/path_homology_atoms.parquet",
        intervention_curves=L.run_file("interventions", "curves"),
    output:
        **L.run_outputs("knobs"),
    params:
        options=config["knobs"],
    threads: 1
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(60),
    log:
        L.log(KNOB_DIR, "knobs.log"),
    benchmark:
        L.benchmark(KNOB_DIR, "knobs.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/knobs.py"


rule knob_figures:
    input:
        summaries=pair_files("knobs", "summary"),
        responses=pair_files("knobs", "responses"),
        checks=pair_files("knobs", "checks"),
        crystal=pair_files("knobs", "crystal"),
        atoms=L.run_file("knobs", "atoms"),
        code=figure_code("knobs"),
    output:
        responses=report(f"{L.run_dir('figures')}/knob_responses.png", caption="../report/knob_responses.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "knob responses"}),
        latent=report(f"{L.run_dir('figures')}/knob_latent_map.png", caption="../report/knob_latent_map.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "knob latent map"}),
        crystal=report(f"{L.run_dir('figures')}/knob_crystal.png", caption="../report/knob_crystal.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "knobs against the crystal"}),
        pdfs=[f"{L.run_dir('figures')}/{name}.pdf" for name in ("knob_responses", "knob_latent_map", "knob_crystal")],
    params:
        splits=lambda w: pair_splits(w.split),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        L.log(L.run_dir("figures"), "knobs.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/knob_figures.py"


rule knobs_all:
    input:
        lambda w: run_files("knobs", "checks", analysed_runs()),
        lambda w: run_files("figures", "knob_responses.png", analysed_runs({"omission", "random", "file"})),
