# The built-in synthetic JUMP-like dataset (used when `plates` is null): paintssl.synthetic.
rule render_synthetic_plate:
    output:
        load_data="resources/synthetic/{plate}/load_data.csv",
        images=directory("resources/synthetic/{plate}/images"),
    log:
        "logs/render_synthetic_plate/{plate}.log",
    benchmark:
        "benchmarks/render_synthetic_plate/{plate}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        synthetic=RENDERING,
    script:
        "../scripts/render_synthetic_plate.py"


rule render_synthetic_metadata:
    output:
        metadata="resources/synthetic/metadata.parquet",
        truth=TRUTH,
    log:
        "logs/render_synthetic_metadata/render_synthetic_metadata.log",
    benchmark:
        "benchmarks/render_synthetic_metadata/render_synthetic_metadata.tsv"
    conda:
        "../envs/preprocess.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        synthetic=RENDERING,
    script:
        "../scripts/render_synthetic_metadata.py"
