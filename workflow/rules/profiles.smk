rule normalize_profiles:
    input:
        embeddings=collect("results/embeddings/{{model}}/{plate}.parquet", plate=EVAL_PLATES),
        metadata="results/images/metadata.parquet",
    output:
        profiles="results/profiles/{model}/well.parquet",
    log:
        "logs/normalize_profiles/{model}.log",
    benchmark:
        "benchmarks/normalize_profiles/{model}.tsv"
    conda:
        "../envs/profiling.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        profiles=lookup(dpath="profiles", within=config),
        steps=get_profile_chain,
    script:
        "../scripts/normalize_profiles.py"


rule aggregate_profiles:
    input:
        profiles="results/profiles/{model}/well.parquet",
    output:
        **{level: f"results/profiles/{{model}}/{level}.parquet" for level in LEVELS},
    log:
        "logs/aggregate_profiles/{model}.log",
    benchmark:
        "benchmarks/aggregate_profiles/{model}.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/aggregate_profiles.py"
