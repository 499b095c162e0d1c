"""What to run when `snakemake --report` stops on a figure that a partial run has not made yet.

Snakemake's own message ("File ... marked for report but does not exist.") names the file but not the way out: a report
covers every figure of its target's jobs, so after a partial run the report to make is that of the target that ran."""

from __future__ import annotations

import logging
import os
import re
import warnings

MISSING = "marked for report but does not exist"
# Snakemake warns of missing metadata for every output of the report's jobs, also for those not made yet: noise
NO_METADATA = re.compile(r"^Missing metadata for file (.+?)\. Maybe metadata was deleted")
# Snakemake's own leak (snakemake/snakemake#4280): a resource computed from input.size_mb inside its event loop (the
# report renders captions with each job's resources) leaves the size coroutine unawaited; the resource is filled in
# later, so the warning says nothing about this workflow
UNAWAITED_SIZES = r"coroutine 'InputFiles\._predicated_size_files\.<locals>\.sizes' was never awaited"
HINT = ("matprobe: a report holds every figure of its target, and this one has not been made yet. Make the report of "
        "the target you ran, with the same --configfile: `snakemake headline --report results/report-headline.html` "
        "after `snakemake headline`, `snakemake figures --report results/report-figures.html` after `snakemake "
        "figures`; or run the target first (docs/outputs.md, Report).")


class _ReportHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        absent = NO_METADATA.match(message)
        if absent and not os.path.exists(absent.group(1)):
            return False  # a file that does not exist has no metadata to miss; the error that follows names it
        if MISSING in message and HINT not in message:
            record.msg, record.args = f"{message}\n{HINT}", ()
        return True


def explain_missing_report_files(logger: logging.Logger | None = None) -> None:
    """Add the hint to Snakemake's error of a missing report file, drop its "Missing metadata" warnings about files
    that do not exist and its unawaited-coroutine warning of input sizes (once, however often the Snakefile is read)."""
    logger = logger or logging.getLogger("snakemake.logging")
    if not any(isinstance(f, _ReportHint) for f in logger.filters):
        logger.addFilter(_ReportHint())
    warnings.filterwarnings("ignore", message=UNAWAITED_SIZES, category=RuntimeWarning)
