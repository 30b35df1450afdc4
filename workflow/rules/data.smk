# Download a CIFAR dataset once, before any job reads it (config: download: true), so
# that parallel training jobs never race to download the same archive. A local rule:
# on a cluster it runs where Snakemake runs (login nodes usually have internet access).


localrules:
    download_dataset,


rule download_dataset:
    output:
        marker=f"{config['data_dir']}/.{{dataset}}.downloaded",
    log:
        "logs/data/{dataset}.log",
    conda:
        SOFTWARE_ENVIRONMENT
    script:
        "../scripts/download.py"
