"""The in-process small LM (``TransformersEngine`` behind ``dspy.LM``): micro-batching, thread safety,
sampling, cache names that follow the weights, encoder-decoder models, and saving.

A random-init tiny model mostly repeats its last prompt token under greedy decoding, so most tests
use a copy whose weights are scrambled with seeded noise: its outputs depend on the whole prompt,
which is what makes "every caller gets its own prompt's answer" a real check.
"""

from __future__ import annotations

import contextvars
import copy
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dspy
import pytest
from support.tiny import scramble_and_save

from lmcot.config import SmallLMConfig
from lmcot.hf_engine import TransformersEngine
from lmcot.model_loading import weights_fingerprint
from lmcot.hf_engine import hf_engine_of
from lmcot.lms import build_lm
from lmcot.programs import LMGuidedCoT, RationaleAdapter, Rationalize, rationale_messages
from lmcot.prompting import messages_to_text, render_prompt


@pytest.fixture(scope="module")
def scrambled_path(tmp_path_factory, tiny_causal_path) -> Path:
    # Same folder name as the tiny model ("llama"): names must differ by the weights alone.
    return scramble_and_save(Path(tiny_causal_path), tmp_path_factory.mktemp("scrambled") / "llama", seed=0)


@pytest.fixture(scope="module")
def scrambled_t5_path(tmp_path_factory, tiny_seq2seq_path) -> Path:
    return scramble_and_save(Path(tiny_seq2seq_path), tmp_path_factory.mktemp("scrambled_t5") / "t5", seed=0)


def small_lm(path, **kw) -> dspy.LM:
    kw.setdefault("max_tokens", 12)
    kw.setdefault("cache", False)
    return build_lm(SmallLMConfig(model=str(path), **kw))


def inputs_of_varied_length(examples, n: int) -> list[dspy.Example]:
    """n distinct questions whose prompts differ in length (so the batch needs real padding)."""
    out = []
    for i, ex in enumerate(examples[:n]):
        out.append(dspy.Example(question=ex.question, context=ex.context[: 60 + 90 * i]).with_inputs("question", "context"))
    return out


class GenerateCounter:
    """Wraps ``engine.model.generate`` and records the batch size of every call."""

    def __init__(self, engine: TransformersEngine):
        self.sizes: list[int] = []
        self._lock = threading.Lock()
        self._orig = engine.model.generate
        engine.model.generate = self  # type: ignore[method-assign]

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.sizes.append(int(kwargs["input_ids"].shape[0]))
        return self._orig(*args, **kwargs)


def rationales_one_at_a_time(lm, inputs) -> list[str]:
    predict = dspy.Predict(Rationalize)
    predict.lm = lm
    with dspy.context(adapter=RationaleAdapter()):
        return [predict(**ex.inputs()).rationale for ex in inputs]


# --------------------------------------------------------------------------- micro-batching

def test_concurrent_predictions_are_one_batched_generate_with_greedy_results_unchanged(scrambled_path, hotpot_examples):
    lm = small_lm(scrambled_path)
    inputs = inputs_of_varied_length(hotpot_examples, 8)
    expected = rationales_one_at_a_time(lm, inputs)
    assert len(set(expected)) == 8, "the scrambled model should answer each prompt differently"

    counter = GenerateCounter(lm.engine)
    predict = dspy.Predict(Rationalize)
    predict.lm = lm
    with dspy.context(adapter=RationaleAdapter()):
        preds = predict.batch(inputs, num_threads=8, disable_progress_bar=True)

    assert sum(counter.sizes) == 8
    assert len(counter.sizes) <= 4, f"8 concurrent calls ran as {counter.sizes}: not micro-batched"
    assert max(counter.sizes) >= 2
    # Left padding (with its attention mask) does not change greedy results.
    assert [p.rationale for p in preds] == expected


def test_sixteen_threads_each_get_their_own_prompts_answer(scrambled_path, hotpot_examples):
    lm = small_lm(scrambled_path)
    # Two different max_tokens: requests with different generation settings must not share a batch.
    jobs = [(f"Question {i}: {ex.question}", 6 + 4 * (i % 2)) for i, ex in enumerate(hotpot_examples[:16])]
    sequential = [lm(prompt, max_tokens=mt)[0] for prompt, mt in jobs]
    assert len(set(sequential)) == 16

    counter = GenerateCounter(lm.engine)
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(contextvars.copy_context().run, lambda j=j: lm(j[0], max_tokens=j[1])[0]) for j in jobs]
        concurrent = [f.result(timeout=120) for f in futures]
    assert concurrent == sequential
    assert sum(counter.sizes) == 16 and len(counter.sizes) < 16


def test_a_failing_generate_reaches_every_waiting_caller(scrambled_path):
    lm = small_lm(scrambled_path)

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    lm.engine.model.generate = boom
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(lm, f"prompt {i}") for i in range(4)]
        for f in futures:
            with pytest.raises(Exception, match="out of memory"):
                f.result(timeout=60)  # an error, not a hang


# --------------------------------------------------------------------------- sampling

def test_seeded_sampling_is_reproducible_and_greedy_ignores_the_seed(scrambled_path):
    lm = small_lm(scrambled_path)
    prompt = "Where was the director of the film born?"
    a = lm(prompt, temperature=0.9, seed=3)[0]
    b = lm(prompt, temperature=0.9, seed=3)[0]
    c = lm(prompt, temperature=0.9, seed=4)[0]
    assert a == b
    assert a != c
    greedy = {lm(prompt, temperature=0.0, seed=s)[0] for s in (None, 1, 2)}
    assert len(greedy) == 1
    assert a not in greedy


def test_sampling_settings_reach_generate(scrambled_path):
    lm = small_lm(scrambled_path)
    seen = []
    orig = lm.engine.generate

    def spy(prompts, *args, **kwargs):
        seen.append(args)
        return orig(prompts, *args, **kwargs)

    lm.engine.generate = spy
    lm("hello", temperature=0.8, top_p=0.9, max_tokens=5, seed=11)
    temperature, top_p, top_k, max_tokens, seed, stop = seen[-1]
    assert (temperature, top_p, max_tokens, seed) == (0.8, 0.9, 5, 11)
    # the config's defaults are what a plain call gets
    lm("hello")
    assert seen[-1][0] == 0.0 and seen[-1][3] == 12


# --------------------------------------------------------------------------- the prompt and usage

def test_engine_receives_exactly_the_rationale_prompt(scrambled_path, hotpot_examples):
    lm = small_lm(scrambled_path)
    engine = lm.engine
    prompts = []
    orig = engine.generate
    engine.generate = lambda ps, *a, **k: (prompts.extend(ps), orig(ps, *a, **k))[1]
    ex = hotpot_examples[0]
    predict = dspy.Predict(Rationalize)
    predict.lm = lm
    with dspy.context(adapter=RationaleAdapter()):
        predict(question=ex.question, context=ex.context[:300])
    assert prompts == [render_prompt(engine.tokenizer, rationale_messages(ex.question, ex.context[:300]), False)]
    assert prompts[0].rstrip().endswith("<|assistant|>")  # the chat template's generation prompt
    # usage is the real token count of that prompt
    usage = lm.history[-1]["usage"]
    assert usage["prompt_tokens"] == len(engine.tokenizer(prompts[0], add_special_tokens=False).input_ids)
    assert 0 < usage["completion_tokens"] <= 12


def test_over_long_prompt_is_cut_from_the_left(scrambled_path, hotpot_examples):
    lm = small_lm(scrambled_path, max_input_tokens=48)
    ex = hotpot_examples[1]
    out = lm(f"{ex.context}\n\nQuestion: {ex.question}")
    assert isinstance(out[0], str)
    assert lm.history[-1]["usage"]["prompt_tokens"] == 48


# --------------------------------------------------------------------------- cache names follow the weights

def test_lm_name_names_the_checkpoint(tiny_causal_path, scrambled_path):
    a1, a2 = small_lm(tiny_causal_path), small_lm(tiny_causal_path)
    b = small_lm(scrambled_path)
    assert a1.model == a2.model  # same checkpoint loaded twice: same name, cache stays useful
    assert a1.model.startswith("hf/llama@")
    assert b.model.startswith("hf/llama@")
    assert a1.model != b.model  # same folder name, different weights
    assert a1.model.endswith(weights_fingerprint(a1.engine.model))
    # an explicit label keeps the weights' hash
    named_a = build_lm(SmallLMConfig(model=str(tiny_causal_path)), name="student")
    named_b = build_lm(SmallLMConfig(model=str(scrambled_path)), name="student")
    assert named_a.model.startswith("hf/student@") and named_a.model != named_b.model


def test_retrained_checkpoint_never_gets_its_parents_cached_output(tmp_path, scrambled_path, fresh_cache):
    ckpt = tmp_path / "student"
    shutil.copytree(scrambled_path, ckpt)
    prompt = "Which magazine was started first?"

    old = small_lm(ckpt, cache=True)
    old_out = old(prompt)[0]

    # Same path again: same name, and the answer now comes from the disk cache.
    again = small_lm(ckpt, cache=True)
    assert again.model == old.model
    counter = GenerateCounter(again.engine)
    assert again(prompt)[0] == old_out
    assert counter.sizes == []

    # "Train" in place: new weights at the same path.
    scramble_and_save(ckpt, ckpt, seed=1)
    new = small_lm(ckpt, cache=True)
    assert new.model != old.model
    counter = GenerateCounter(new.engine)
    new_out = new(prompt)[0]
    assert counter.sizes == [1], "the retrained model's call was answered from the old model's cache"
    direct = new.engine.generate([render_prompt(new.engine.tokenizer, [{"role": "user", "content": prompt}], False)],
                                 max_new_tokens=12)[0][0]
    assert new_out == direct
    assert new_out != old_out


# --------------------------------------------------------------------------- encoder-decoder

def test_encoder_decoder_model_through_the_same_path(scrambled_t5_path, hotpot_examples):
    lm = small_lm(scrambled_t5_path)
    engine = hf_engine_of(lm)
    assert engine is not None and engine.is_encoder_decoder
    inputs = inputs_of_varied_length(hotpot_examples, 6)
    prompts = []
    orig = engine.generate
    engine.generate = lambda ps, *a, **k: (prompts.extend(ps), orig(ps, *a, **k))[1]

    expected = rationales_one_at_a_time(lm, inputs)
    assert len(set(expected)) > 1
    # a seq2seq model has no chat template: it is fed the flat text of the same messages
    assert prompts[0] == messages_to_text(rationale_messages(inputs[0].question, inputs[0].context))
    assert prompts[0].endswith("Rationale:")

    counter = GenerateCounter(engine)
    predict = dspy.Predict(Rationalize)
    predict.lm = lm
    with dspy.context(adapter=RationaleAdapter()):
        preds = predict.batch(inputs, num_threads=6, disable_progress_bar=True)
    assert [p.rationale for p in preds] == expected
    assert len(counter.sizes) < 6


def test_untrained_model_that_stops_at_once_gives_an_empty_rationale(tiny_seq2seq_path):
    # The raw tiny T5 emits EOS immediately; that is an empty rationale, not a failed example.
    lm = small_lm(tiny_seq2seq_path)
    predict = dspy.Predict(Rationalize)
    predict.lm = lm
    with dspy.context(adapter=RationaleAdapter()):
        pred = predict(question="Who wrote it?", context="A: It was written by B.")
    assert isinstance(pred.rationale, str)


# --------------------------------------------------------------------------- copies and saving

def test_deepcopy_shares_the_weights(scrambled_path):
    lm = small_lm(scrambled_path)
    program = LMGuidedCoT(lm, None)
    clone = program.deepcopy()
    assert clone is not program
    assert clone.small_lm.engine is lm.engine
    assert clone.small_lm.engine.model is lm.engine.model
    assert copy.deepcopy(lm).engine is lm.engine


def test_engine_state_round_trips(scrambled_path):
    lm = small_lm(scrambled_path)
    state = json.loads(json.dumps(lm.engine.dump_state()))  # JSON-safe, as written in program files
    assert state["model"] == str(scrambled_path)
    assert state["expected_fingerprint"] == lm.engine.fingerprint
    engine = TransformersEngine.load_state(state)
    assert engine.fingerprint == lm.engine.fingerprint
    prompt = render_prompt(engine.tokenizer, [{"role": "user", "content": "Who?"}], False)
    assert engine.generate([prompt], max_new_tokens=8) == lm.engine.generate([prompt], max_new_tokens=8)

    # through DSPy's LM state (what program.save writes)
    restored = dspy.LM.load_state(json.loads(json.dumps(lm.dump_state())), allow_custom_lm_class=True)
    assert restored.model == lm.model
    assert isinstance(restored.engine, TransformersEngine)
    assert restored("Who?")[0] == lm("Who?")[0]


def test_changed_checkpoint_at_the_same_path_is_refused_on_load(tmp_path, scrambled_path):
    ckpt = tmp_path / "student"
    shutil.copytree(scrambled_path, ckpt)
    lm = small_lm(ckpt)
    state = lm.engine.dump_state()
    lm_state = lm.dump_state()
    scramble_and_save(ckpt, ckpt, seed=5)
    with pytest.raises(ValueError, match="changed since this program was saved"):
        TransformersEngine.load_state(state)
    with pytest.raises(ValueError, match="changed since this program was saved"):
        dspy.LM.load_state(lm_state, allow_custom_lm_class=True)


def test_small_lm_config_reads_back_what_build_lm_was_given(tiny_causal_path):
    """The compiler takes the student's weights *and* settings from the program's LM (one source)."""
    from lmcot.config import SmallLMConfig
    from lmcot.lms import small_lm_config

    cfg = SmallLMConfig(model=str(tiny_causal_path), device="cpu", dtype="float32", batch_size=3, max_tokens=17,
                        max_input_tokens=99, temperature=0.4, seed=5, cache=False)
    from lmcot.lms import build_lm

    assert small_lm_config(build_lm(cfg)) == cfg


def test_seeded_sampled_requests_are_not_batched_together(tiny_causal_path):
    """One torch seed for a whole batch would make a seeded sample depend on its batch-mates."""
    from concurrent.futures import ThreadPoolExecutor

    from lmcot.hf_engine import TransformersEngine
    from lmcot.model_loading import resolve_source

    engine = TransformersEngine(resolve_source(str(tiny_causal_path)), batch_size=8, batch_wait_ms=50)
    calls: list[int] = []
    original = engine.generate

    def counting(prompts, *args, **kwargs):
        calls.append(len(prompts))
        return original(prompts, *args, **kwargs)

    engine.generate = counting
    lm = dspy.LM("hf/tiny", engine=engine, cache=False, max_tokens=4, num_retries=0)

    def sample(i: int) -> str:
        return lm(f"prompt {i}", temperature=0.8, seed=7)[0]

    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(sample, range(6)))
    assert calls == [1] * 6
    # Same seed, same prompt -> same text however the requests arrived. (Greedy requests do share a
    # generate: tests/test_throughput.py.)
    assert sample(3) == outs[3]
