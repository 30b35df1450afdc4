# Time real training steps of one (dataset, architecture, family, recipe, batch size) on the
# config's device with `python -m aol calibrate`; a budget run's train job derives its epochs
# from this file (workflow/rules/train.smk); a failed calibration is recorded like a failed
# run (failed_runs), and its train jobs then fail, naming it. Timed jobs: run them one at a
# time per device
# (--cores 1 on a CPU; one GPU job per GPU), or their times and the epochs are off.


rule calibrate:
    input:
        unpack(dataset_files),
    output:
        calibration=CALIBRATION_FILE,
    log:
        config_log(
            "calibrate/{dataset}/{architecture}/{family}/{recipe}_batch{batch_size}_{precision}.log"
        ),
    conda:
        SOFTWARE_ENVIRONMENT
    threads: job_threads  # the train jobs' threads: it times their steps
    resources:
        gpu=GPUS_PER_JOB,
        mem_mb=job_mem_mb,
        runtime=job_runtime("measure"),
    params:
        guard=GUARD,
        engine=ENGINE,
        arguments=calibrate_arguments,
        failed_runs=config["failed_runs"],
    shell:
        "{params.guard} --log {log} --record {output.calibration} --gpus {resources.gpu} "
        "--failed-runs {params.failed_runs} "
        "-- {params.engine} calibrate --dataset {wildcards.dataset} "
        "--architecture {wildcards.architecture} --family {wildcards.family} "
        "--threads {threads} --out {output.calibration} {params.arguments}"
