"""KD training tokens/s: lmcot's ``distill`` vs a bare TRL ``SFTTrainer`` on the same tokenized
examples, model and settings, in the same process (alternating, min and median of ``--repeat``).

    PYTHONPATH=tests .venv/bin/python bench/bench_kd_throughput.py [--model FOLDER] [--steps 20] [--batch 8]

Default model: the tests' tiny random-init Llama (tests/support/tiny.py); ``--model`` takes a
local folder (e.g. SmolLM2-135M dequantized to safetensors). The examples are questions and
contexts from the dev sample with a gold supporting sentence as the "rationale"; both arms train on
exactly ``steps x batch`` of them (one epoch) built by ``lmcot.optimizers.distill.build_example``, so
they process the same tokens. Tokens/s = non-padding tokens / the Trainer's own ``train_runtime``
(model loading, tokenizing and saving are outside it in both arms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import dev_file, tiny_model


def rows_from_dev(n: int) -> list[dict]:
    from lmcot.data import load_examples

    out = []
    examples = load_examples("hotpotqa", dev_file()).examples
    for i in range(n):
        e = examples[i % len(examples)]
        words = str(e.context).split()[:60]
        facts = [s for title, sents in e.paragraphs for s in sents][:2]
        out.append({"question": e.question, "context": " ".join(words),
                    "rationale": f"{' '.join(facts)} So the answer is {e.answer}. ({i})"})
    return out


def lmcot_arm(model: str, kept: list[dict], steps: int, batch: int) -> float:
    from lmcot.config import KDConfig, SmallLMConfig
    from lmcot.optimizers.distill import distill

    out = Path(tempfile.mkdtemp(prefix="lmcot-bench-"))
    kd = KDConfig(max_steps=steps, batch_size=batch, report_to=[], learning_rate=5e-5)
    distill(kept, model, out, kd, SmallLMConfig(model=model, device="cpu"), progress=True)
    log = json.loads((out / "train_log.json").read_text())
    return float(next(e["train_runtime"] for e in log if "train_runtime" in e))


def bare_arm(model: str, rows: list[dict], steps: int, batch: int) -> float:
    """What a user would write with TRL alone: SFTTrainer, its defaults, the same tokens, and the same
    precision as lmcot on CPU (SFTConfig defaults to bf16=True, whose autocast on this CPU is ~1.4x
    slower than float32: that would measure the precision, not the trainer)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(42)
    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForCausalLM.from_pretrained(model, dtype="float32")
    args = SFTConfig(output_dir=tempfile.mkdtemp(prefix="lmcot-bench-"), per_device_train_batch_size=batch,
                     max_steps=steps, learning_rate=5e-5, report_to="none", use_cpu=True, save_strategy="no",
                     disable_tqdm=True, max_length=2048, completion_only_loss=True, packing=False, seed=42,
                     bf16=False)
    trainer = SFTTrainer(model=net, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    return float(trainer.train().metrics["train_runtime"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from lmcot.optimizers.distill import build_example

    model = args.model or tiny_model()
    kept = rows_from_dev(args.steps * args.batch)
    tok = AutoTokenizer.from_pretrained(model)
    rows = [build_example(tok, False, r, 2048, 2048) for r in kept]
    tokens = sum(len(r["input_ids"]) for r in rows)
    lmcot_arm(model, kept[: 2 * args.batch], 2, args.batch)  # warm-up: imports, first-step set-up
    bare_arm(model, rows[: 2 * args.batch], 2, args.batch)
    ours, bare = [], []
    for _ in range(args.repeat):
        ours.append(tokens / lmcot_arm(model, kept, args.steps, args.batch))
        bare.append(tokens / bare_arm(model, rows, args.steps, args.batch))
    print(f"{Path(model).name}: {args.steps} steps x {args.batch} examples, {tokens} tokens")
    print(f"  bare TRL SFTTrainer  min {min(bare):.0f}  median {statistics.median(bare):.0f} tok/s")
    print(f"  lmcot distill        min {min(ours):.0f}  median {statistics.median(ours):.0f} tok/s")
    print(f"  lmcot / bare: {min(ours) / min(bare):.2f} (min)  {statistics.median(ours) / statistics.median(bare):.2f} "
          "(median)")


if __name__ == "__main__":
    main()
