# Time real training steps of one (dataset, architecture, family, recipe, batch size) on the
# config's device with `python -m aol calibrate`; a budget run's train job derives its epochs
# from this file (workflow/rules/train.smk). Timed jobs: run them one at a time per device
# (--cores 1 on a CPU; one GPU job per GPU), or their times and the epochs are off.


rule calibrate:
    input:
        unpack(dataset_files),
    output:
        calibration=CALIBRATION_FILE,
    log:
        "logs/calibrate/{dataset}/{architecture}/{family}/{recipe}_batch{batch_size}.log",
    conda:
        SOFTWARE_ENVIRONMENT
    threads: 1
    resources:
        gpu=GPUS_PER_JOB,
    params:
        engine=ENGINE,
        arguments=calibrate_arguments,
    shell:
        "{params.engine} calibrate --dataset {wildcards.dataset} "
        "--architecture {wildcards.architecture} --family {wildcards.family} "
        "--threads {threads} --out {output.calibration} {params.arguments} > {log} 2>&1"
