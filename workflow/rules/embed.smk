rule embed_shard:
    input:
        manifest="results/images/{plate}/manifest.parquet",
        weights="results/pretrain/{model}/weights.pt",
    output:
        embeddings=temp("results/embeddings/{model}/{plate}/shard-{shard}.parquet"),
    log:
        "logs/embed_shard/{model}/{plate}/{shard}.log",
    benchmark:
        "benchmarks/embed_shard/{model}/{plate}/{shard}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        embed={key: config["embed"][key] for key in ("n_shards", "batch_size", "stride")},
    script:
        "../scripts/embed_shard.py"


rule gather_embeddings:
    input:
        shards=collect("results/embeddings/{{model}}/{{plate}}/shard-{shard}.parquet", shard=SHARDS),
    output:
        embeddings="results/embeddings/{model}/{plate}.parquet",
    log:
        "logs/gather_embeddings/{model}/{plate}.log",
    benchmark:
        "benchmarks/gather_embeddings/{model}/{plate}.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        embed={"well_aggregation": config["embed"]["well_aggregation"]},
    script:
        "../scripts/gather_embeddings.py"
