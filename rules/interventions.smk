# Stage 5d: physical interventions on the crystal (isotropic strain, a first-shell stretch, element substitution), per
# analysed model. An omission and its control edit the same crystals and atoms: each reads both splits of the pair
# and samples from the crystals the two share in each set.

INTERVENTION_DIR = L.run_dir("interventions")


rule interventions:
    input:
        model=L.run_file("models", "model"),
        model_verified=verified(L.run_file("models", "model")),
        materials=L.materials,
        materials_verified=verified(L.materials),
        splits=pair_split_files,
        splits_verified=lambda w: [verified(path) for path in pair_split_files(w)],
    output:
        **L.run_outputs("interventions"),
    params:
        options=stage_settings(config, "interventions"),
        graph=config["graph"],
    threads: 1
    resources:
        mem_mb=scaled(1500, 2.0),
        runtime=by_attempt(30),
    log:
        L.log(INTERVENTION_DIR, "interventions.log"),
    benchmark:
        L.benchmark(INTERVENTION_DIR, "interventions.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/interventions.py"


rule intervention_figures:
    input:
        curves=pair_files("interventions", "curves"),
        summaries=pair_files("interventions", "summary"),
        code=figure_code("interventions"),
    output:
        strain=report(f"{L.run_dir('figures')}/intervention_strain.png", caption="../report/intervention_strain.rst", category="4 Attribution",
                      subcategory=RUN_CATEGORY, labels={"figure": "energy-volume curves"}),
        responses=report(f"{L.run_dir('figures')}/intervention_responses.png", caption="../report/intervention_responses.rst",
                         category="4 Attribution", subcategory=RUN_CATEGORY, labels={"figure": "intervention responses"}),
        pdfs=[f"{L.run_dir('figures')}/{name}.pdf" for name in ("intervention_strain", "intervention_responses")],
    params:
        splits=lambda w: pair_splits(w.split),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        L.log(L.run_dir("figures"), "interventions.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/intervention_figures.py"


rule interventions_all:
    input:
        lambda w: run_files("interventions", "counts", analysed_runs()),
        lambda w: run_files("figures", "intervention_strain.png", analysed_runs({"omission", "random", "file"})),
