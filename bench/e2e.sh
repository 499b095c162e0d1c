#!/usr/bin/env bash
# Times the default run end to end (embedded demo, every stage, figures and report) in a fresh copy of the
# workflow, then a second invocation that must do nothing. Goal: at most 10 minutes on 2 cores.
#   bash bench/e2e.sh [cores]      (KEEP_RESULTS=dir keeps the results folder for a look)
set -euo pipefail
cores=${1:-all}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$repo"/{Snakefile,rules,workflow_scripts,config,profiles,envs,report} "$work"/
cd "$work"
start=$(date +%s)
snakemake --cores "$cores" > run.log 2>&1 || { tail -50 run.log; exit 1; }
snakemake --report results/report.html >> run.log 2>&1
first=$(( $(date +%s) - start ))
start=$(date +%s)
snakemake --cores "$cores" > again.log 2>&1
second=$(( $(date +%s) - start ))
grep -q "Nothing to be done" again.log || { echo "second run was not a no-op"; exit 1; }
echo "default run (all stages + report): ${first} s; second invocation: ${second} s (nothing to do)"
if [ -n "${KEEP_RESULTS:-}" ]; then rm -rf "$KEEP_RESULTS"; cp -r results "$KEEP_RESULTS"; cp -r benchmarks "$KEEP_RESULTS/benchmarks"; fi
grep -E "^(job|[a-z_]+ +[0-9]+$)" run.log | sed -n '1,40p' | sort -u
