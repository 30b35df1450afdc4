# From per-run JSON files to summary CSVs, then one table per experiment (plus the cost
# table) and the figures. These rules are cheap and run where Snakemake runs.


localrules:
    collect,
    table,
    figure,
    orthogonality_figure,


rule collect:
    input:
        results=result_files(),
        certificates=certify_files(),
        measurements=measure_files(),
    output:
        runs=config_output("summary/runs.csv"),
        curves=config_output("summary/curves.csv"),
        measurements=config_output("summary/measurements.csv"),
    log:
        config_log("aggregate/collect.log"),
    conda:
        SOFTWARE_ENVIRONMENT
    params:
        measured_families=measured_families(),
    script:
        "../scripts/collect.py"


rule table:
    input:
        runs=config_output("summary/runs.csv"),
        measurements=config_output("summary/measurements.csv"),
        reference=PUBLISHED,
    output:
        csv=config_output("tables/{table}.csv"),
        markdown=config_output("tables/{table}.md"),
        latex=config_output("tables/{table}.tex"),
        html=report(
            config_output("tables/{table}.html"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        config_log("aggregate/table_{table}.log"),
    conda:
        SOFTWARE_ENVIRONMENT
    params:
        experiment=experiment_of,
        seeds=SEEDS,
        budget_hours=nominal_budget_hours(),
    script:
        "../scripts/tables.py"


rule figure:
    input:
        runs=config_output("summary/runs.csv"),
        curves=config_output("summary/curves.csv"),
        measurements=config_output("summary/measurements.csv"),
    output:
        png=report(
            config_output("figures/{figure}.png"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf=config_output("figures/{figure}.pdf"),
    log:
        config_log("aggregate/figure_{figure}.log"),
    wildcard_constraints:
        figure="|".join(FIGURES),
    conda:
        SOFTWARE_ENVIRONMENT
    script:
        "../scripts/figures.py"


# The AOL paper's Figures 1-2 for one trained AOL run (common.smk: orthogonality_run):
# |J^T J| of a trained convolution and the singular values of every layer.
rule orthogonality_figure:
    input:
        result=orthogonality_result,
    output:
        png=report(
            ORTHOGONALITY_FIGURE.format(ext="png"),
            caption="../report/orthogonality.rst",
            category="Figures",
            labels={"figure": "orthogonality"},
        ),
        pdf=ORTHOGONALITY_FIGURE.format(ext="pdf"),
    log:
        config_log("aggregate/figure_orthogonality.log"),
    conda:
        SOFTWARE_ENVIRONMENT
    params:
        input_shape=orthogonality_input_shape,
    script:
        "../scripts/orthogonality.py"
