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
        n_shards=lookup(dpath="embed/n_shards", within=config),
        batch_size=lookup(dpath="embed/batch_size", within=config),
        stride=lookup(dpath="embed/stride", within=config),
    script:
        "../scripts/embed_shard.py"


rule gather_embeddings:
    input:
        shards=collect("results/embeddings/{{model}}/{{plate}}/shard-{shard}.parquet", shard=SHARDS),
    output:
        embeddings="results/embeddings/{model}/{plate}.parquet",
    log:
        "logs/gather_embeddings/{model}/{plate}.log",
    conda:
        "../envs/profiling.yaml"
    params:
        well_aggregation=lookup(dpath="embed/well_aggregation", within=config),
    script:
        "../scripts/gather_embeddings.py"
