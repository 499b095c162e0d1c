# Stage 5: attributions per trained model, and topological descriptors once per dataset.

ATTRIBUTION_DIR = "results/attribution/{dataset}/{target}/{split}/{model}/seed{seed}"


rule topology:
    input:
        "results/data/{dataset}/materials.parquet",
    output:
        ph="results/topology/{dataset}/ph.parquet",
        summary="results/topology/{dataset}/summary.json",
    params:
        radius=config["topology"]["radius"],
    threads: 8
    resources:
        mem_mb=scaled(2000, 4.0),
        runtime=by_attempt(120),
    log:
        "logs/topology/{dataset}.log",
    benchmark:
        "benchmarks/topology/{dataset}.tsv"
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/topology.py"


rule attribute_model:
    input:
        model=f"{MODEL_DIR}/model.pt",
        predictions=f"{MODEL_DIR}/predictions.parquet",
        latents=f"{MODEL_DIR}/latents.parquet",
        graphs=GRAPHS,
        materials="results/data/{dataset}/materials.parquet",
        split="results/splits/{dataset}/{split}.json",
        ph="results/topology/{dataset}/ph.parquet",
    output:
        atoms=f"{ATTRIBUTION_DIR}/atoms.parquet",
        elements=f"{ATTRIBUTION_DIR}/elements.parquet",
        element_pca=f"{ATTRIBUTION_DIR}/element_pca.parquet",
        ig_atoms=f"{ATTRIBUTION_DIR}/ig_atoms.parquet",
        ig_elements=f"{ATTRIBUTION_DIR}/ig_elements.parquet",
        trim=f"{ATTRIBUTION_DIR}/trim.parquet",
        trim_summary=f"{ATTRIBUTION_DIR}/trim_summary.parquet",
        topology=f"{ATTRIBUTION_DIR}/topology_correlations.parquet",
        summary=f"{ATTRIBUTION_DIR}/summary.json",
    params:
        options=config["attribution"],
    threads: 1
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(120),
    log:
        f"logs/{ATTRIBUTION_DIR}/attribution.log",
    benchmark:
        f"benchmarks/{ATTRIBUTION_DIR}/attribution.tsv"
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/attribute_model.py"


rule attributions:
    input:
        run_files(ATTRIBUTION_DIR, "summary.json", seeds=ANALYSIS_SEEDS),
