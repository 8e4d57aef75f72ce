# dimcollapse: dimensional collapse in video representation models.
# Data flows one way: manifest -> clips -> features -> statistics -> figures.
# `snakemake --workflow-profile profiles/default` runs the study in config.yaml;
# `--configfile other.yaml` replaces config.yaml entirely (see README).

from snakemake.utils import min_version, validate

min_version("9.0")

if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/checkpoints.smk"
include: "rules/extract.smk"
include: "rules/probes.smk"
include: "rules/analysis.smk"


rule all:
    input:
        all_targets(),
    default_target: True
