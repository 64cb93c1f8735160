# Sourced by scripts/quickstart.sh and scripts/experiment-quickstart.sh (one copy of the set-up):
# set up .venv, set the offline environment, start the SCRIPTED stand-in large LM (tests/support/
# oracle_responder.py, --rationale-sensitive) on a free 127.0.0.1 port over the bundled quickstart data,
# stop it on exit, and leave its address in $url, its model name in $standin_model and its start-up
# line (what it is, which reader rule) in $standin_line.
# READER_RULE=follow (default) | lenient: how the stand-in reads a student's rationale. follow answers the
# conclusion the rationale states ("So the answer is X": right only when X is the gold); lenient answers right
# whenever the rationale quotes gold evidence, even under a wrong conclusion (the rule before issue 15).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True TOKENIZERS_PARALLELISM=false
# Torch threads for the in-process student: two unless the caller set OMP_NUM_THREADS (the tests set 1).
# Measured on the 2-core box: the quickstart took 11 min 38 s at two threads, 16-19 min at one, and
# printed the same table. More threads than cores only adds contention, hence min(2, cores).
cores=$(nproc 2>/dev/null || echo 1)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores < 2 ? cores : 2 ))}

READER_RULE=${READER_RULE:-follow}
case "$READER_RULE" in follow|lenient) ;; *) echo "READER_RULE must be follow or lenient, not '$READER_RULE'"; exit 2;; esac
# The rule is in the model name, so the LM-call cache never serves one rule's answers to the other.
standin_model="openai/oracle-$READER_RULE"

log=$(mktemp)
# What the stand-in knows and plays: the HotpotQA quickstart's unless the caller sets STANDIN_DATA
# (scripts/gsm8k-quickstart.sh: --config configs/gsm8k-quickstart.yaml, read by lmcot's own loader).
STANDIN_DATA=${STANDIN_DATA:---data configs/quickstart/hotpotqa_train.json --data configs/quickstart/hotpotqa_dev.json}
# shellcheck disable=SC2086  # STANDIN_DATA is a list of arguments
PYTHONPATH=tests .venv/bin/python -m support.oracle_server $STANDIN_DATA --rationale-sensitive --standard-accuracy 0.35 \
  --cot-accuracy 0.45 --wrong-rate 0.2 --reader-rule "$READER_RULE" --port 0 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*/v1' "$log" | head -1)
[ -n "$url" ] || { echo "the stand-in large LM did not start:"; cat "$log"; exit 1; }
standin_line=$(grep -v "listening on" "$log" || true)   # its start-up line: what it is and what it scripts
echo "$standin_line"
echo "stand-in large LM at $url"
