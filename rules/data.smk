# Stage 1: data. Download (local rule, network only here), then normalise to one Parquet table.


localrules:
    download_source_file,


rule download_source_file:
    output:
        f"{DOWNLOAD_DIR}/{{filename}}",
    params:
        remote=lambda wildcards: remote_file_by_name(wildcards.filename),
        mirror_dir=config["data"]["mirror_dir"],
        retries=config["data"]["retries"],
    threads: 1
    log:
        "logs/download/{filename}.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/download_source_file.py"


checkpoint normalise_dataset:
    input:
        unpack(dataset_inputs),
        # downloads are checked in a job of their own first: a file that fails its checksum stops the run there,
        # before this job is started and its earlier table deleted
        verified=download_stamps,
    output:
        table=L.materials,
        rejected=f"{L.data_dir}/rejected.parquet",
        summary=f"{L.data_dir}/summary.json",
    params:
        spec=lambda wildcards: config["datasets"][wildcards.dataset],
        min_distance=config["data"]["min_distance"],
    threads: 8
    resources:
        mem_mb=scaled(2000, 4.0),
        runtime=by_attempt(30),
    log:
        L.log(L.data_dir, "normalise.log"),
    benchmark:
        L.benchmark(L.data_dir, "normalise.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/normalise_dataset.py"


rule data:
    input:
        expand(L.materials, dataset=DATASETS),
