# Stage 2a: crystal graphs, built once per dataset and graph settings (GRAPH_KEY), reused by every split and model.


rule build_graphs:
    input:
        "results/data/{dataset}/materials.parquet",
    output:
        graphs=f"results/graphs/{{dataset}}/{GRAPH_KEY}/graphs.pt",
        rejected=f"results/graphs/{{dataset}}/{GRAPH_KEY}/rejected.parquet",
        summary=f"results/graphs/{{dataset}}/{GRAPH_KEY}/summary.json",
    params:
        cutoff=config["graph"]["cutoff"],
        max_neighbors=config["graph"]["max_neighbors"],
    threads: 8
    resources:
        mem_mb=scaled(2000, 10.0),
        runtime=by_attempt(20),
    log:
        f"logs/graphs/{{dataset}}/{GRAPH_KEY}.log",
    benchmark:
        f"benchmarks/graphs/{{dataset}}/{GRAPH_KEY}.tsv"
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/build_graphs.py"


rule graphs:
    input:
        expand(f"results/graphs/{{dataset}}/{GRAPH_KEY}/graphs.pt", dataset=DATASETS),
