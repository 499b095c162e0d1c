# matprobe: what has a materials graph neural network really learned?
# Only includes, config validation and the default target live here; logic is in the matprobe package.

from snakemake.utils import min_version

from matprobe import MatprobeError
from matprobe.config import validate_config
from matprobe.report.hint import explain_missing_report_files

min_version("9.0")


report: "report/workflow.rst"


# `snakemake --report` after a partial run: say which report to make instead
explain_missing_report_files()


# A named config (--configfile config/mp36k.yaml) replaces the default one rather than merging into it,
# so that its datasets and splits are exactly the ones it lists.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


try:
    validate_config(config)
except MatprobeError as error:
    raise SystemExit(f"matprobe: {error}")


include: "rules/common.smk"
include: "rules/verify.smk"
include: "rules/data.smk"
include: "rules/graphs.smk"
include: "rules/splits.smk"
include: "rules/train.smk"
include: "rules/landscapes.smk"
include: "rules/attribution.smk"
include: "rules/probe_maps.smk"
include: "rules/knobs.smk"
include: "rules/interventions.smk"
include: "rules/figures.smk"
include: "rules/atlas.smk"


rule all:
    default_target: True
    input:
        rules.data.input,
        rules.graphs.input,
        rules.splits.input,
        rules.train.input,
        rules.landscapes.input,
        rules.attributions.input,
        rules.probe_maps.input,
        rules.knobs_all.input,
        rules.interventions_all.input,
        rules.figures.input,
        # The atlas compares omissions across the periodic table: only a config that sweeps ({omit_each: ...}) has one.
        rules.atlas.input if SWEEPING else [],
