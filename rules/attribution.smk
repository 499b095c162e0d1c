# Stage 5: attributions per trained model, and topological descriptors once per dataset and topology settings.

ATTRIBUTION_DIR = L.run_dir("attribution")


rule topology:
    input:
        L.materials,
    output:
        ph=f"{L.topology_dir}/ph.parquet",
        atoms=f"{L.topology_dir}/ph_atoms.parquet",
        summary=f"{L.topology_dir}/summary.json",
    params:
        radius=config["topology"]["radius"],
    threads: 8
    resources:
        mem_mb=scaled(2000, 4.0),
        runtime=by_attempt(120),
    log:
        L.log(L.topology_dir, "ph.log"),
    benchmark:
        L.benchmark(L.topology_dir, "ph.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/topology.py"


rule path_homology:
    input:
        L.materials,
    output:
        crystals=f"{L.path_homology_dir}/path_homology.parquet",
        elements=f"{L.path_homology_dir}/path_homology_elements.parquet",
        atoms=f"{L.path_homology_dir}/path_homology_atoms.parquet",
        summary=f"{L.path_homology_dir}/summary.json",
    params:
        options=config["path_homology"],
    threads: 8
    resources:
        mem_mb=scaled(2000, 4.0),
        runtime=by_attempt(120),
    log:
        L.log(L.path_homology_dir, "path_homology.log"),
    benchmark:
        L.benchmark(L.path_homology_dir, "path_homology.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/path_homology.py"


rule attribute_model:
    input:
        model=L.run_file("models", "model"),
        model_verified=verified(L.run_file("models", "model")),
        predictions=L.run_file("models", "predictions"),
        latents=L.run_file("models", "latents"),
        **run_inputs(),
        ph=f"{L.topology_dir}/ph.parquet",
        directed=f"{L.path_homology_dir}/path_homology.parquet",
        directed_elements=f"{L.path_homology_dir}/path_homology_elements.parquet",
    output:
        **L.run_outputs("attribution"),
    params:
        options=config["attribution"],
        radius=config["topology"]["radius"],
        step=config["path_homology"]["step"],
    threads: 1
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(120),
    log:
        L.log(ATTRIBUTION_DIR, "attribution.log"),
    benchmark:
        L.benchmark(ATTRIBUTION_DIR, "attribution.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/attribute_model.py"


rule attributions:
    input:
        lambda w: run_files("attribution", "summary", analysed_runs()),
