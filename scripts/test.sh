#!/usr/bin/env bash
# Runs the whole test suite (unit, parity with ../shared/fixtures, CLI end-to-end).
# Fixtures path: -Dvlm4j.fixtures=DIR or VLM4J_FIXTURES=DIR (default ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/java-home.sh
args=()
[ -n "${VLM4J_FIXTURES:-}" ] && args+=("-Dvlm4j.fixtures=$VLM4J_FIXTURES")
exec ./mvnw -B -ntp "${args[@]}" "$@" verify
