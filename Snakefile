# The AOL reproducibility pipeline: train -> certify / measure -> tables, figures, report.
# This file only wires; the stages live in workflow/rules/, the experiment definitions
# in config/ (validated against workflow/schemas/config.schema.yaml) and the ways to
# run it (GPU box, SLURM) in profiles/.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/certify.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        final_targets(),
