# Training-step time, inference time, weight-transform time and peak memory of every family
# of one (dataset, architecture), timed side by side with the reference family in one
# process (`python -m aol measure --families ...`); independent of training.


rule measure:
    input:
        unpack(dataset_files),
    output:
        measurement=MEASURE_FILE,
    log:
        config_log("measure/{dataset}/{architecture}/batch{batch_size}.log"),
    conda:
        SOFTWARE_ENVIRONMENT
    threads: job_threads
    resources:
        gpu=GPUS_PER_JOB,
        mem_mb=job_mem_mb,
        runtime=job_runtime("measure"),
    params:
        guard=GUARD,
        engine=ENGINE,
        arguments=measure_arguments,
        failed_runs=config["failed_runs"],
    shell:
        "{params.guard} --log {log} --record {output.measurement} --gpus {resources.gpu} "
        "--failed-runs {params.failed_runs} "
        "-- {params.engine} measure --architecture {wildcards.architecture} "
        "--batch-size {wildcards.batch_size} --out {output.measurement} {params.arguments}"
