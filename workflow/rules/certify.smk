# Certify a trained run with `python -m aol certify` (float64, exported weights, the
# family's guaranteed bound, Lipschitz and attack audits). A run whose training was
# recorded as failed is recorded as failed here too, without calling the engine.


rule certify:
    input:
        unpack(dataset_files),
        result=f"{RUN_DIR}/result.json",
    output:
        certificate=CERTIFY_FILE,
    log:
        config_log(f"certify/{RUN_PATH}.log"),
    conda:
        SOFTWARE_ENVIRONMENT
    threads: job_threads
    resources:
        gpu=GPUS_PER_JOB,
        mem_mb=job_mem_mb,
        runtime=job_runtime("certify"),
    params:
        guard=GUARD,
        engine=ENGINE,
        run_dir=run_dir,
        arguments=certify_arguments,
        failed_runs=config["failed_runs"],
    shell:
        "{params.guard} --log {log} --record {output.certificate} --gpus {resources.gpu} "
        "--failed-runs {params.failed_runs} "
        "--skip-if-failed {input.result} --keep-written-record "
        "-- {params.engine} certify --run {params.run_dir} --out {output.certificate} "
        "{params.arguments}"
