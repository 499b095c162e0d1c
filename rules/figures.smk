# Stage 6: figures from stored results (never re-training), the summary table, and the report captions.

FIG_DIR = "results/figures/{dataset}"
MODEL_FIG_DIR = "results/figures/{dataset}/{target}/{split}/{model}/seed{seed}"


localrules:
    training_figures,
    landscape_figures,
    parity_figure,
    model_figures,
    summary_table,
    headline_table,
    worst_predictions,


rule training_figures:
    input:
        metrics=lambda w: run_files(MODEL_DIR, "metrics.json", [w.dataset]),
        histories=lambda w: run_files(MODEL_DIR, "history.parquet", [w.dataset]),
        code=FIGURE_CODE,
    output:
        headline=report(f"{FIG_DIR}/headline.png", caption="../report/headline.rst", category="1 Headline"),
        headline_pdf=f"{FIG_DIR}/headline.pdf",
        curves=report(f"{FIG_DIR}/training_curves.png", caption="../report/training_curves.rst", category="2 Training"),
        curves_pdf=f"{FIG_DIR}/training_curves.pdf",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(20),
    log:
        "logs/figures/{dataset}_training.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/training_figures.py"


rule landscape_figures:
    input:
        flatness=lambda w: run_files(LANDSCAPE_DIR, "metrics.json", [w.dataset], ANALYSIS_SEEDS),
        grids=lambda w: run_files(LANDSCAPE_DIR, "grid.parquet", [w.dataset], ANALYSIS_SEEDS),
        code=FIGURE_CODE,
    output:
        flatness=report(f"{FIG_DIR}/flatness_table.png", caption="../report/flatness_table.rst", category="3 Loss landscapes"),
        flatness_pdf=f"{FIG_DIR}/flatness_table.pdf",
        landscapes=report(f"{FIG_DIR}/landscapes_1d.png", caption="../report/landscapes_1d.rst", category="3 Loss landscapes"),
        landscapes_pdf=f"{FIG_DIR}/landscapes_1d.pdf",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(20),
    log:
        "logs/figures/{dataset}_landscapes.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_figures.py"


# Every trained model gets its parity plot; the probe figures below need its landscape and attribution.
rule parity_figure:
    input:
        predictions=f"{MODEL_DIR}/predictions.parquet",
        code=FIGURE_CODE,
    output:
        parity=report(f"{MODEL_FIG_DIR}/parity.png", caption="../report/parity.rst", category="2 Training", subcategory="{target} {split} {model} seed{seed}"),
        pdf=f"{MODEL_FIG_DIR}/parity.pdf",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        f"logs/{MODEL_FIG_DIR}/parity.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/parity_figure.py"


rule model_figures:
    input:
        predictions=f"{MODEL_DIR}/predictions.parquet",
        split="results/splits/{dataset}/{split}.json",
        grid=f"{LANDSCAPE_DIR}/grid.parquet",
        hessian=f"{LANDSCAPE_DIR}/hessian.json",
        atoms=f"{ATTRIBUTION_DIR}/atoms.parquet",
        elements=f"{ATTRIBUTION_DIR}/elements.parquet",
        element_pca=f"{ATTRIBUTION_DIR}/element_pca.parquet",
        trim_summary=f"{ATTRIBUTION_DIR}/trim_summary.parquet",
        topology=f"{ATTRIBUTION_DIR}/topology_correlations.parquet",
        materials="results/data/{dataset}/materials.parquet",
        code=FIGURE_CODE,
    output:
        landscape_2d=report(f"{MODEL_FIG_DIR}/landscape_2d.png", caption="../report/landscape_2d.rst", category="3 Loss landscapes", subcategory="{target} {split} {model} seed{seed}"),
        landscape_3d=report(f"{MODEL_FIG_DIR}/landscape_3d.png", caption="../report/landscape_3d.rst", category="3 Loss landscapes", subcategory="{target} {split} {model} seed{seed}"),
        hessian=report(f"{MODEL_FIG_DIR}/hessian_density.png", caption="../report/hessian.rst", category="3 Loss landscapes", subcategory="{target} {split} {model} seed{seed}"),
        periodic=report(f"{MODEL_FIG_DIR}/periodic_tables.png", caption="../report/periodic_tables.rst", category="4 Attribution", subcategory="{target} {split} {model} seed{seed}"),
        structures=report(f"{MODEL_FIG_DIR}/structures.png", caption="../report/structures.rst", category="4 Attribution", subcategory="{target} {split} {model} seed{seed}"),
        element_map=report(f"{MODEL_FIG_DIR}/element_map.png", caption="../report/element_map.rst", category="4 Attribution", subcategory="{target} {split} {model} seed{seed}"),
        trim=report(f"{MODEL_FIG_DIR}/trim.png", caption="../report/trim.rst", category="4 Attribution", subcategory="{target} {split} {model} seed{seed}"),
        topology=report(f"{MODEL_FIG_DIR}/topology.png", caption="../report/topology.rst", category="4 Attribution", subcategory="{target} {split} {model} seed{seed}"),
        pdfs=[f"{MODEL_FIG_DIR}/{name}.pdf" for name in ("landscape_2d", "landscape_3d", "hessian_density", "periodic_tables", "structures", "element_map", "trim", "topology")],
    params:
        radius=config["topology"]["radius"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(20),
    log:
        f"logs/{MODEL_FIG_DIR}/figures.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/model_figures.py"


rule summary_table:
    input:
        models=run_files(MODEL_DIR, "metrics.json"),
        landscapes=run_files(LANDSCAPE_DIR, "metrics.json", seeds=ANALYSIS_SEEDS),
        attributions=run_files(ATTRIBUTION_DIR, "summary.json", seeds=ANALYSIS_SEEDS),
    output:
        parquet="results/summary/runs.parquet",
        csv=report("results/summary/runs.csv", caption="../report/summary.rst", category="1 Headline"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        "logs/summary.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/summary_table.py"


rule headline_table:
    input:
        metrics=lambda w: run_files(MODEL_DIR, "metrics.json", [w.dataset]),
    output:
        csv="results/summary/{dataset}/headline.csv",
        markdown="results/summary/{dataset}/headline.md",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=by_attempt(5),
    log:
        "logs/summary/{dataset}_headline.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/headline_table.py"


rule worst_predictions:
    input:
        predictions=lambda w: run_files(MODEL_DIR, "predictions.parquet", [w.dataset]),
        materials="results/data/{dataset}/materials.parquet",
    output:
        report("results/summary/{dataset}/worst_predictions.csv", caption="../report/worst_predictions.rst", category="2 Training"),
    threads: 1
    resources:
        mem_mb=scaled(1000, 2.0),
        runtime=by_attempt(5),
    log:
        "logs/summary/{dataset}_worst_predictions.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/worst_predictions.py"


# The headline numbers and figure from training alone, before any landscape or attribution job has run.
rule headline:
    input:
        expand("results/summary/{dataset}/headline.csv", dataset=DATASETS),
        expand("results/summary/{dataset}/worst_predictions.csv", dataset=DATASETS),
        expand(f"{FIG_DIR}/headline.png", dataset=DATASETS),


rule figures:
    input:
        expand("results/summary/{dataset}/headline.csv", dataset=DATASETS),
        expand("results/summary/{dataset}/worst_predictions.csv", dataset=DATASETS),
        expand(f"{FIG_DIR}/headline.png", dataset=DATASETS),
        expand(f"{FIG_DIR}/flatness_table.png", dataset=DATASETS),
        run_files(MODEL_FIG_DIR, "parity.png"),
        run_files(MODEL_FIG_DIR, "landscape_2d.png", seeds=ANALYSIS_SEEDS),
        "results/summary/runs.parquet",
