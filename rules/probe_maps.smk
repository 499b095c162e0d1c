# Stage 5b: probe maps. The omission model's predictions choose the crystals; it and its control map them; the two
# are compared.

PROBE_DIR = L.run_dir("probe_maps")
# maps need held-out chemistry: omission splits and their controls, of the analysed seeds
PROBED_RUNS = [run for run in ANALYSED_RUNS if split_base(run.split)[0] != "random"]
PROBED_OMISSIONS = [run for run in PROBED_RUNS if not split_base(run.split)[1]]


def omission_model_file(filename):
    """A file of the omission's model folder, for the omission and for its control alike: the omission chooses the
    crystals both map."""
    return lambda w: str(L.path(MODEL_DIR, dataset=w.dataset, target=w.target, split=split_base(w.split)[0], model=w.model,
                                seed=w.seed) / filename)


rule probe_map:
    input:
        model=f"{MODEL_DIR}/model.pt",
        omission_predictions=omission_model_file("predictions.parquet"),
        omission_latents=omission_model_file("latents.parquet"),
        split=L.split,
        materials=L.materials,
    output:
        maps=f"{PROBE_DIR}/maps.parquet",
        atoms=f"{PROBE_DIR}/plane_atoms.parquet",
        summary=f"{PROBE_DIR}/summary.json",
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
        omission=f"{PROBE_DIR}/maps.parquet",
        control=lambda w: str(L.path(PROBE_DIR, dataset=w.dataset, target=w.target, split=w.split + CONTROL_SUFFIX,
                                     model=w.model, seed=w.seed) / "maps.parquet"),
    output:
        f"{PROBE_DIR}/comparison.json",
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


def probe_figure_inputs(w):
    """The maps of an omission and (with controls) of its control, in that order, and their comparison."""
    runs = [w.split] + ([w.split + CONTROL_SUFFIX] if config["split_options"]["controls"] else [])
    folders = [L.path(PROBE_DIR, dataset=w.dataset, target=w.target, split=split, model=w.model, seed=w.seed) for split in runs]
    return {"maps": [str(f / "maps.parquet") for f in folders], "atoms": [str(f / "plane_atoms.parquet") for f in folders]}


rule probe_map_figures:
    input:
        unpack(probe_figure_inputs),
        code=figure_code("probe_maps"),
    output:
        maps=report(f"{L.run_dir('figures')}/probe_maps.png", caption="../report/probe_maps.rst", category="4 Attribution", subcategory=RUN_CATEGORY),
        pdf=f"{L.run_dir('figures')}/probe_maps.pdf",
    params:
        splits=lambda w: [w.split] + ([w.split + CONTROL_SUFFIX] if config["split_options"]["controls"] else []),
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
        run_files("probe_maps", "summary.json", PROBED_RUNS),
        run_files("probe_maps", "comparison.json", PROBED_OMISSIONS) if config["split_options"]["controls"] else [],
        run_files("figures", "probe_maps.png", PROBED_OMISSIONS),
