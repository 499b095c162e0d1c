# Stage 6: figures from stored results (never re-training), by family: one job per family and dataset or model,
# each with its family's plotting module among its inputs, so that an edit to one family re-runs only its figures
# and a failing plot leaves the other families' figures standing. Then the summary tables and report captions.

FIG_DIR = L.dataset_figures
MODEL_FIG_DIR = L.run_dir("figures")


localrules:
    training_figures,
    parity_figure,
    landscape_overview_figures,
    landscape_figures,
    attribution_figures,
    topology_figures,
    summary_table,
    headline_table,
    worst_predictions,
    findings,
    runs_table_page,
    worst_predictions_page,
    interactive_views,


rule training_figures:
    input:
        metrics=lambda w: run_files("models", "metrics", dataset=w.dataset),
        histories=lambda w: run_files("models", "history", dataset=w.dataset),
        code=figure_code("training"),
    output:
        headline=report(f"{FIG_DIR}/headline.png", caption="../report/headline.rst", category="1 Headline",
               labels={"figure": "headline: held-out against ID error"}),
        headline_pdf=f"{FIG_DIR}/headline.pdf",
        curves=report(f"{FIG_DIR}/training_curves.png", caption="../report/training_curves.rst", category="2 Training", subcategory="All runs",
               labels={"figure": "training curves of every run"}),
        curves_pdf=f"{FIG_DIR}/training_curves.pdf",
    params:
        runs=lambda w: run_keys(dataset=w.dataset),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(20),
    log:
        L.log(FIG_DIR, "training.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/training_figures.py"


# Every trained model gets its parity plot; the probe figures below need its landscape and attribution.
rule parity_figure:
    input:
        predictions=L.run_file("models", "predictions"),
        code=figure_code("training"),
    output:
        parity=report(f"{MODEL_FIG_DIR}/parity.png", caption="../report/parity.rst", category="2 Training", subcategory=RUN_CATEGORY,
               labels={"figure": "parity and error per set"}),
        pdf=f"{MODEL_FIG_DIR}/parity.pdf",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        L.log(MODEL_FIG_DIR, "parity.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/parity_figure.py"


rule landscape_overview_figures:
    input:
        flatness=lambda w: run_files("landscape", "metrics", analysed_runs(), w.dataset),
        grids=lambda w: run_files("landscape", "grid", analysed_runs(), w.dataset),
        code=figure_code("landscapes"),
    output:
        flatness=report(f"{FIG_DIR}/flatness_table.png", caption="../report/flatness_table.rst", category="3 Loss landscapes", subcategory="All runs",
               labels={"figure": "flatness metrics of every run"}),
        flatness_pdf=f"{FIG_DIR}/flatness_table.pdf",
        landscapes=report(f"{FIG_DIR}/landscapes_1d.png", caption="../report/landscapes_1d.rst", category="3 Loss landscapes", subcategory="All runs",
               labels={"figure": "1D landscapes of every run"}),
        landscapes_pdf=f"{FIG_DIR}/landscapes_1d.pdf",
    params:
        runs=lambda w: run_keys(analysed_runs(), w.dataset),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(20),
    log:
        L.log(FIG_DIR, "landscapes.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_overview_figures.py"


rule landscape_figures:
    input:
        grid=L.run_file("landscape", "grid"),
        hessian=L.run_file("landscape", "hessian"),
        code=figure_code("landscapes"),
    output:
        landscape_2d=report(f"{MODEL_FIG_DIR}/landscape_2d.png", caption="../report/landscape_2d.rst", category="3 Loss landscapes", subcategory=RUN_CATEGORY,
               labels={"figure": "2D landscape, contours per set"}),
        landscape_3d=report(f"{MODEL_FIG_DIR}/landscape_3d.png", caption="../report/landscape_3d.rst", category="3 Loss landscapes", subcategory=RUN_CATEGORY,
               labels={"figure": "3D loss surface"}),
        hessian=report(f"{MODEL_FIG_DIR}/hessian_density.png", caption="../report/hessian.rst", category="3 Loss landscapes", subcategory=RUN_CATEGORY,
               labels={"figure": "Hessian eigenvalue density"}),
        pdfs=[f"{MODEL_FIG_DIR}/{name}.pdf" for name in ("landscape_2d", "landscape_3d", "hessian_density")],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(20),
    log:
        L.log(MODEL_FIG_DIR, "landscapes.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_figures.py"


rule attribution_figures:
    input:
        predictions=L.run_file("models", "predictions"),
        split=run_split,
        atoms=L.run_file("attribution", "atoms"),
        elements=L.run_file("attribution", "elements"),
        element_pca=L.run_file("attribution", "element_pca"),
        trim_summary=L.run_file("attribution", "trim_summary"),
        materials=L.materials,
        code=figure_code("attribution"),
    output:
        periodic=report(f"{MODEL_FIG_DIR}/periodic_tables.png", caption="../report/periodic_tables.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "periodic tables"}),
        structures=report(f"{MODEL_FIG_DIR}/structures.png", caption="../report/structures.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "structures and atom contributions"}),
        element_map=report(f"{MODEL_FIG_DIR}/element_map.png", caption="../report/element_map.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "element embedding map"}),
        trim=report(f"{MODEL_FIG_DIR}/trim.png", caption="../report/trim.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "TRIM attributions"}),
        pdfs=[f"{MODEL_FIG_DIR}/{name}.pdf" for name in ("periodic_tables", "structures", "element_map", "trim")],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(20),
    log:
        L.log(MODEL_FIG_DIR, "attribution.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/attribution_figures.py"


rule topology_figures:
    input:
        correlations=L.run_file("attribution", "topology"),
        diagrams=L.run_file("attribution", "diagrams"),
        curves=L.run_file("attribution", "betti_curves"),
        code=figure_code("topology"),
    output:
        topology=report(f"{MODEL_FIG_DIR}/topology.png", caption="../report/topology.rst", category="4 Attribution", subcategory=RUN_CATEGORY,
               labels={"figure": "topology"}),
        pdf=f"{MODEL_FIG_DIR}/topology.pdf",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(20),
    log:
        L.log(MODEL_FIG_DIR, "topology.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/topology_figures.py"


rule summary_table:
    input:
        models=lambda w: run_files("models", "metrics"),
        landscapes=lambda w: run_files("landscape", "metrics", analysed_runs()),
        attributions=lambda w: run_files("attribution", "summary", analysed_runs()),
    output:
        parquet=f"{L.summary}/runs.parquet",
        csv=f"{L.summary}/runs.csv",
    params:
        runs=lambda w: run_keys(),
        analysed=lambda w: run_keys(analysed_runs()),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        L.log(L.summary, "runs.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/summary_table.py"


rule headline_table:
    input:
        metrics=lambda w: run_files("models", "metrics", dataset=w.dataset),
    output:
        csv=f"{L.dataset_summary}/headline.csv",
        markdown=f"{L.dataset_summary}/headline.md",
    params:
        runs=lambda w: run_keys(dataset=w.dataset),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=by_attempt(5),
    log:
        L.log(L.dataset_summary, "headline.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/headline_table.py"


rule worst_predictions:
    input:
        predictions=lambda w: run_files("models", "predictions", dataset=w.dataset),
        materials=L.materials,
    output:
        f"{L.dataset_summary}/worst_predictions.csv",
    params:
        runs=lambda w: run_keys(dataset=w.dataset),
    threads: 1
    resources:
        mem_mb=scaled(1000, 2.0),
        runtime=by_attempt(5),
    log:
        L.log(L.dataset_summary, "worst_predictions.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/worst_predictions.py"


# The headline numbers and figure from training alone, before any landscape or attribution job has run.
rule headline:
    input:
        expand(f"{L.dataset_summary}/headline.csv", dataset=DATASETS),
        # a sweep's findings include the atlas, which needs landscapes: not from training alone
        [] if SWEEPING else f"{L.summary}/findings.html",
        expand(f"{L.dataset_summary}/worst_predictions.csv", dataset=DATASETS),
        expand(f"{FIG_DIR}/headline.png", dataset=DATASETS),


rule figures:
    input:
        rules.headline.input,
        expand(f"{FIG_DIR}/flatness_table.png", dataset=DATASETS),
        lambda w: run_files("figures", "parity.png"),
        lambda w: run_files("figures", "landscape_2d.png", analysed_runs()),
        lambda w: run_files("figures", "periodic_tables.png", analysed_runs()),
        lambda w: run_files("figures", "topology.png", analysed_runs()),
        f"{L.summary}/runs.parquet",
        f"{L.summary}/findings.html",
        f"{L.summary}/runs.html",
        expand(f"{L.dataset_summary}/worst_predictions.html", dataset=DATASETS),
        expand(f"{FIG_DIR}/interactive.html", dataset=DATASETS),


# ---- what the HTML report shows besides the figures (matprobe.report.views) -----------------------------------------

# The findings of the run, which the report's landing page (report/workflow.rst) includes: a few sentences and the
# table of ID, held-out and control errors, from the headline tables (and a sweep's atlas).
rule findings:
    input:
        headlines=expand(f"{L.dataset_summary}/headline.csv", dataset=DATASETS),
        atlases=lambda w: expand(f"{L.atlas_dir}/atlas.parquet", dataset=DATASETS) if SWEEPING else [],
        code=report_code(),
    output:
        report(f"{L.summary}/findings.html", caption="../report/findings.rst", category="1 Headline",
               labels={"figure": "findings: errors against the controls"}),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=by_attempt(5),
    log:
        L.log(L.summary, "findings.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/report_findings.py"


# The report offers a CSV as a download only: the tables it should show are also written as HTML pages.
rule runs_table_page:
    input:
        csv=f"{L.summary}/runs.csv",
        code=report_code(),
    output:
        report(f"{L.summary}/runs.html", caption="../report/summary.rst", category="1 Headline",
               labels={"figure": "every run's metrics (table)"}),
    params:
        title="Every trained model: its keys and every scalar metric of training, landscape and attribution",
        note="One row per trained model; the same table as summary/runs.csv and runs.parquet beside it.",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=by_attempt(5),
    log:
        L.log(L.summary, "runs_page.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/report_table_page.py"


rule worst_predictions_page:
    input:
        csv=f"{L.dataset_summary}/worst_predictions.csv",
        code=report_code(),
    output:
        report(f"{L.dataset_summary}/worst_predictions.html", caption="../report/worst_predictions.rst", category="2 Training",
               subcategory="All runs", labels={"figure": "worst predictions of {dataset} (table)"}),
    params:
        title="The crystals each model gets most wrong, per set",
        note="Error = prediction − DFT value; the same table as worst_predictions.csv beside it.",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=by_attempt(5),
    log:
        L.log(L.dataset_summary, "worst_predictions_page.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/report_table_page.py"


# One self-contained interactive page per dataset (Plotly embedded once: see matprobe.report.views).
rule interactive_views:
    input:
        grids=lambda w: run_files("landscape", "grid", analysed_runs(), w.dataset),
        predictions=lambda w: run_files("models", "predictions", dataset=w.dataset),
        materials=L.materials,
        knob_responses=lambda w: run_files("knobs", "responses", analysed_runs(), w.dataset),
        knob_summaries=lambda w: run_files("knobs", "summary", analysed_runs(), w.dataset),
        atlas=lambda w: [f"{L.atlas_dir}/atlas.parquet".format(dataset=w.dataset)] if SWEEPING else [],
        code=report_code(),
    output:
        report(f"{FIG_DIR}/interactive.html", caption="../report/interactive.rst", category="6 Interactive",
               labels={"figure": "interactive views of {dataset}"}),
    params:
        analysed=lambda w: run_keys(analysed_runs(), w.dataset),
        runs=lambda w: run_keys(dataset=w.dataset),
    threads: 1
    resources:
        mem_mb=scaled(2000, 2.0),
        runtime=by_attempt(10),
    log:
        L.log(FIG_DIR, "interactive.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/interactive_views.py"
