"""lmcot from Python, on a task of your own (README, "Python"; tests/test_any_task_api.py runs this file).

    python docs/examples/any_task.py [key.path=value ...]      # e.g. large_lm.api_base=http://127.0.0.1:8765/v1
"""
import sys

import dspy

from lmcot.config import load_config
from lmcot.lms import build_lm
from lmcot.optimizers import LMCoTCompiler
from lmcot.programs import LMGuidedCoT
from lmcot.programs.evaluation import evaluate_program
from lmcot.splits import load_split

# The LMs and the training recipe (small_lm, large_lm, kd, rl, stages) come from a config; key.path=value
# arguments override any key, as --set does on the command line.
config = load_config("configs/gsm8k-quickstart.yaml", overrides=sys.argv[1:])
small, large = build_lm(config.small_lm), build_lm(config.large_lm)

# Examples, either way. (1) The splits a config's data section names, read and cut exactly as
# `lmcot compile` does (contexts counted with the small LM's tokenizer):
valset = load_split(config, "dev")
# (2) No data section at all: any list of dspy.Example with a question and an answer. An id, a context
# and a rationale of the task's own are optional (kd.source: dataset distils these rationales).
trainset = [dspy.Example(question=q, answer=a, rationale=r).with_inputs("question") for q, a, r in [
    ("Tom has 3 apples and buys 4 more. How many apples does he have now?", "7",
     "Tom starts with 3 apples and buys 4 more, so he has 3 + 4 = 7 apples."),
    ("A box holds 6 eggs. How many eggs are in 5 boxes?", "30",
     "Each box holds 6 eggs, so 5 boxes hold 5 * 6 = 30 eggs."),
    ("Ann had $20 and spent $8 on a book. How many dollars does she have left?", "12",
     "Ann spent 8 of her 20 dollars, so she has 20 - 8 = 12 dollars left."),
]]


def within_one_percent(example, prediction, trace=None):
    """A DSPy metric: the last number of the answer is within 1% of the gold number."""
    import re

    numbers = re.findall(r"-?\d+(?:\.\d+)?", (prediction.answer or "").replace(",", ""))
    gold = float(example.answer.replace(",", ""))
    return bool(numbers) and abs(float(numbers[-1]) - gold) <= 0.01 * abs(gold)


program = LMGuidedCoT(small, large)
compiled = LMCoTCompiler(config, out_dir="runs/any-task").compile(program, trainset=trainset, valset=valset,
                                                                    metric=within_one_percent)
rows, summary = evaluate_program(compiled, valset, metric=within_one_percent)
print(f"dev: EM {summary['em']:.3f}, within 1%: {summary['metric']:.3f} (n={summary['n']})")
again = LMGuidedCoT.from_folder("runs/any-task", config)  # reloaded; endpoints and keys from your config
