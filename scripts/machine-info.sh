#!/usr/bin/env bash
# Prints the machine a benchmark runs on, for the header of scripts/bench*.sh output and the
# tables in BENCHMARKS.md: date, CPU, cores, toolchain, kernel, commit, load.
echo "== machine"
echo "date:    $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "cpu:     $(lscpu 2>/dev/null | grep 'Model name' | sed 's/Model name:[[:space:]]*//' || echo unknown)"
echo "cores:   $(nproc)"
echo "rustc:   $(rustc -V)"
echo "cargo:   $(cargo -V)"
echo "kernel:  $(uname -srm)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (dirty)')"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min; other work on the machine skews the figures)"
echo
