#!/usr/bin/env bash
# The experiment quickstart, offline: set up .venv, start a local stand-in large LM, and run
#   lmcot experiment --config configs/experiment-quickstart.yaml --out runs/exp
# which writes runs/exp/report.md, report.html, results.json and plots/. Re-render with `lmcot report runs/exp`.
#
# Nothing is downloaded: the student is a tiny random-init model built locally, and the large LM is
# the tests' scripted OpenAI-compatible server (tests/support/oracle_server.py) on 127.0.0.1 that reads the gold answers of the bundled
# data (a stand-in so the pipeline runs without an API key). Real scale: configs/experiment-hotpotqa.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-runs/exp}

# The student: a tiny random-init Llama built by the tests' helper (a stand-in; lmcot treats it as any folder).
PYTHONPATH=tests .venv/bin/python -m support.tiny --out runs/tiny-llama

log=$(mktemp)
PYTHONPATH=tests .venv/bin/python -m support.oracle_server --data configs/quickstart/hotpotqa_train.json \
  --data configs/quickstart/hotpotqa_dev.json --wrong-rate 0.25 --port 0 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*/v1' "$log" | head -1)
[ -n "$url" ] || { echo "the stand-in large LM did not start:"; cat "$log"; exit 1; }
echo "stand-in large LM (scripted, knows the gold answers; no API key needed) at $url"

.venv/bin/lmcot experiment --config configs/experiment-quickstart.yaml --out "$OUT" --set large_lm.api_base="$url" "$@"
