# Sourced by scripts/quickstart.sh and scripts/experiment-quickstart.sh (one copy of the set-up):
# set up .venv, set the offline environment, start the SCRIPTED stand-in large LM (tests/support/
# oracle_responder.py, --rationale-sensitive) on a free 127.0.0.1 port over the bundled quickstart data,
# stop it on exit, and leave its address in $url.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True TOKENIZERS_PARALLELISM=false
# Torch threads for the in-process student: two unless the caller set OMP_NUM_THREADS (the tests set 1).
# Measured on the 2-core box: the quickstart took 11 min 38 s at two threads, 16-19 min at one, and
# printed the same table. More threads than cores only adds contention, hence min(2, cores).
cores=$(nproc 2>/dev/null || echo 1)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores < 2 ? cores : 2 ))}

log=$(mktemp)
# What the stand-in knows and plays: the HotpotQA quickstart's unless the caller sets STANDIN_DATA
# (scripts/gsm8k-quickstart.sh: --config configs/gsm8k-quickstart.yaml, read by lmcot's own loader).
STANDIN_DATA=${STANDIN_DATA:---data configs/quickstart/hotpotqa_train.json --data configs/quickstart/hotpotqa_dev.json}
# shellcheck disable=SC2086  # STANDIN_DATA is a list of arguments
PYTHONPATH=tests .venv/bin/python -m support.oracle_server $STANDIN_DATA --rationale-sensitive --standard-accuracy 0.35 \
  --cot-accuracy 0.45 --wrong-rate 0.2 --port 0 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*/v1' "$log" | head -1)
[ -n "$url" ] || { echo "the stand-in large LM did not start:"; cat "$log"; exit 1; }
grep -v "listening on" "$log" || true   # its start-up line: what it is and what it scripts
echo "stand-in large LM at $url"
