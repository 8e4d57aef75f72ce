# dimcollapse: dimensional collapse in video representation models.
# Data flows one way: manifest -> clips -> features -> statistics -> figures.
# `snakemake --workflow-profile profiles/default` runs the study in config.yaml;
# `--configfile other.yaml` replaces config.yaml entirely (see README).

import sys

from snakemake.utils import min_version, validate

min_version("9.0")

if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# A misspelt key gets one line naming it, its file and the closest allowed key, not the
# whole schema that validate() prints.
sys.path.insert(0, workflow.basedir)
from dimcollapse.config.schema import unknown_keys_message

if problems := unknown_keys_message(config, f"{workflow.basedir}/schemas/config.schema.yaml", workflow.configfiles):
    sys.exit(problems)
validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/checkpoints.smk"
include: "rules/extract.smk"
include: "rules/probes.smk"
include: "rules/analysis.smk"
include: "rules/trends.smk"
include: "rules/similarity.smk"
include: "rules/temporal.smk"


onstart:
    # Temporary files and empty partial folders of jobs killed in an earlier run.
    from dimcollapse.atomic import clean_stray

    clean_stray("results")


rule all:
    input:
        all_targets(),
    default_target: True
