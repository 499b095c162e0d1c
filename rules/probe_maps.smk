# Stage 5b: probe maps. The omission model's predictions choose the crystals; it and its control map them; the two
# are compared.

PROBE_DIR = L.run_dir("probe_maps")
# maps need held-out chemistry: omission splits and their controls, of the analysed seeds


rule probe_map:
    input:
        model=L.run_file("models", "model"),
        model_verified=verified(L.run_file("models", "model")),
        omission_predictions=omission_file("models", "predictions"),
        omission_latents=omission_file("models", "latents"),
        split=run_split,
        materials=L.materials,
    output:
        **L.run_outputs("probe_maps", ("maps", "atoms", "summary")),
    params:
        options=config["probe_maps"],
        graph=config["graph"],
    threads: 1
    resources:
        mem_mb=scaled(2000, 2.0),
        runtime=by_attempt(60),
    log:
        L.log(PROBE_DIR, "maps.log"),
    benchmark:
        L.benchmark(PROBE_DIR, "maps.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/probe_map.py"


rule compare_probe_maps:
    input:
        omission=L.run_file("probe_maps", "maps"),
        control=lambda w: run_file("probe_maps", "maps", Run(w.dataset, w.target, w.split + CONTROL_SUFFIX, w.model, int(w.seed))),
    output:
        L.run_file("probe_maps", "comparison"),
    threads: 1
    resources:
        mem_mb=scaled(1000, 4.0),
        runtime=by_attempt(10),
    log:
        L.log(PROBE_DIR, "comparison.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/compare_probe_maps.py"


rule probe_map_figures:
    input:
        maps=pair_files("probe_maps", "maps"),
        atoms=pair_files("probe_maps", "atoms"),
        code=figure_code("probe_maps"),
    output:
        maps=report(f"{L.run_dir('figures')}/probe_maps.png", caption="../report/probe_maps.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "probe maps"}),
        pdf=f"{L.run_dir('figures')}/probe_maps.pdf",
    params:
        splits=lambda w: pair_splits(w.split),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        L.log(L.run_dir("figures"), "probe_maps.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/probe_map_figures.py"


rule probe_maps:
    input:
        lambda w: run_files("probe_maps", "summary", analysed_runs({"omission", "control"})),
        lambda w: run_files("probe_maps", "comparison", analysed_runs({"omission"})) if config["split_options"]["controls"] else [],
        lambda w: run_files("figures", "probe_maps.png", analysed_runs({"omission"})),
