# Pretraining (or, for method random, initialising) the models that build a network.
# weights.pt is not protected(): a changed model entry must retrain. The checkpoint (not an
# output) keeps the work: a rerun of the same run resumes it, at its last step if finished.
rule pretrain:
    input:
        manifests=collect("results/images/{plate}/manifest.parquet", plate=TRAIN_PLATES),
    output:
        weights="results/pretrain/{model}/weights.pt",
        metrics="results/pretrain/{model}/metrics.jsonl",
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    wildcard_constraints:
        model=one_of(PRETRAINED_MODELS),
    # the longest jobs, and every network's embeddings wait for them: start them first
    priority: 10
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=1440,
    params:
        model=get_model,
        channels=lookup(dpath="channels", within=config),
        seed=lookup(dpath="seed", within=config),
        ckpt="results/pretrain/{model}/ckpt/last.pt",
    script:
        "../scripts/pretrain.py"
