# Train one (dataset, architecture, family, variant, seed) with `python -m aol train`.
# Only result.json (written last by the engine) is a declared output: checkpoint.pt and
# metrics.jsonl live beside it but are not outputs, so that Snakemake never deletes them
# when a job is interrupted, and rerunning the job resumes from the checkpoint.


rule train:
    input:
        unpack(train_inputs),
    output:
        result=f"{RUN_DIR}/result.json",
    log:
        "logs/train/{dataset}/{architecture}/{family}/{variant}/seed{seed}.log",
    conda:
        SOFTWARE_ENVIRONMENT
    threads: job_threads
    resources:
        gpu=GPUS_PER_JOB,
        mem_mb=job_mem_mb,
        runtime=job_runtime("train"),
    params:
        guard=GUARD,
        engine=ENGINE,
        run_dir=run_dir,
        arguments=train_arguments,
        failed_runs=config["failed_runs"],
    shell:
        "{params.guard} --log {log} --record {output.result} --gpus {resources.gpu} "
        "--failed-runs {params.failed_runs} "
        "-- {params.engine} train --dataset {wildcards.dataset} "
        "--architecture {wildcards.architecture} --family {wildcards.family} "
        "--seed {wildcards.seed} --out {params.run_dir} --threads {threads} "
        "{params.arguments}"
