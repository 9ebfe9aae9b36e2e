"""Rejection sampling with a scripted sampler: acceptance, dedup, verifier errors, retry, cost."""

import json

import pytest

from scalinglab.engine import Completion, Generation, GenerationResult
from scalinglab.errors import UserError
from scalinglab.synth.rejection import SynthConfig, normalise, rejection_sample, retry_prompt, write_synth
from scalinglab.tasks.arithmetic import Arithmetic
from scalinglab.verify.verdict import Verdict


class ErrTask(Arithmetic):
    """Arithmetic whose verifier 'crashes' on any completion containing ERR."""

    def check(self, problem, completion):
        if "ERR" in completion:
            return Verdict.failed("verifier crashed")
        return super().check(problem, completion)


def scripted_sampler(script, calls):
    """Sampler returning script[prompt] (cycled to n); one token per char; FLOPs = 10/token."""

    def sample(prompts, params):
        calls.append((list(prompts), params))
        gens, gen_tokens = [], 0
        for p in prompts:
            texts = [script[p][j % len(script[p])] for j in range(params.n)]
            comps = [Completion(t, list(range(len(t))), [0.0] * len(t), "eos") for t in texts]
            gen_tokens += sum(len(t) for t in texts)
            gens.append(Generation(p, list(range(len(p))), comps))
        pt = sum(len(p) for p in prompts)
        return GenerationResult(
            gens,
            prompt_tokens=pt,
            generated_tokens=gen_tokens,
            prompt_flops=10.0 * pt,
            generated_flops=10.0 * gen_tokens,
        )

    return sample


def problems():
    t = ErrTask(name="arithmetic")
    return t, [t.make(2, "+", 3, id="p1"), t.make(4, "+", 4, id="p2")]


def test_acceptance_dedup_errors_and_cost():
    task, (p1, p2) = problems()
    script = {
        p1.prompt: ["A: 5\n", "A:  5\n", "A: 6\n", "ERR\n"],  # correct, duplicate, wrong, verifier error
        p2.prompt: ["A: 9\n", "4+4+0=8\nA: 8\n", "A: 7\n", "A: 1\n"],
    }
    calls = []
    rows, s = rejection_sample(task, [p1, p2], scripted_sampler(script, calls), SynthConfig(k=4, max_new_tokens=16))
    assert len(calls) == 1 and calls[0][1].n == 4 and calls[0][0] == [p1.prompt, p2.prompt]
    assert (s["samples"], s["correct"], s["wrong"], s["errors"]) == (8, 3, 4, 1)
    assert s["acceptance_rate"] == 3 / 8 and s["verifier_error_rate"] == 1 / 8
    assert (s["kept"], s["duplicates"], s["problems_with_kept"], s["problem_coverage"]) == (2, 1, 2, 1.0)
    assert [r["id"] for r in rows] == ["p1/0", "p2/1"]
    # tokens: prompts "2+3=?\n" and "4+4=?\n" (6 chars each); generated = chars of all 8 texts
    gen = sum(len(t) for v in script.values() for t in v)
    assert s["prompt_tokens"] == 12 and s["generated_tokens"] == gen
    assert s["tokens_per_kept"] == (12 + gen) / 2 and s["flops_per_kept"] == 10.0 * (12 + gen) / 2
    r = rows[1]
    assert r == {
        "id": "p2/1",
        "task": "arithmetic",
        "prompt": "4+4=?\n",
        "answer": "8",
        "completion": "4+4+0=8\nA: 8\n",
        "steps": ["4+4+0=8\n", "A: 8\n"],
        "correct": True,
        "meta": {"problem_id": "p2", "sample_index": 1, "tokens": 13, "attempt": 1, "finish_reason": "eos"},
    }
    assert "retries" not in s


def test_no_dedup_keeps_repeats():
    task, (p1, _) = problems()
    rows, s = rejection_sample(
        task,
        [p1],
        scripted_sampler({p1.prompt: ["A: 5\n", "A: 5\n"]}, []),
        SynthConfig(k=2, max_new_tokens=8, dedup=False),
    )
    assert s["kept"] == 2 and s["duplicates"] == 0


def test_retry_prompt_masks_the_reference():
    _, (p1, _) = problems()
    assert retry_prompt(p1, "A: 6", "answered 6, expected 5") == "2+3=?\nA: 6\n# wrong: answered 6, expected ?\n2+3=?\n"


def test_retry_success_rate():
    task, (p1, p2) = problems()
    r_wrong = retry_prompt(p1, "A: 6\n", "answered 6, expected 5")
    script = {
        p1.prompt: ["A: 5\n", "A: 6\n", "ERR\n"],
        p2.prompt: ["A: 7\n", "A: 7\n", "A: 8\n"],
        r_wrong: ["A: 5\n"],
        retry_prompt(p2, "A: 7\n", "answered 7, expected 8"): ["A: 8\n"],
    }
    calls = []
    rows, s = rejection_sample(
        task, [p1, p2], scripted_sampler(script, calls), SynthConfig(k=3, max_new_tokens=8, retry=True)
    )
    assert len(calls) == 2  # the verifier-error sample is not retried
    retry_prompts, params = calls[1]
    assert params.n == 1 and params.seed == 1 and len(retry_prompts) == 3  # 1 wrong of p1, 2 wrong of p2
    assert (s["retries"], s["retry_correct"], s["retry_success_rate"]) == (3, 3, 1.0)
    # kept: p1 first attempt "A: 5" (retry duplicate dropped), p2 "A: 8" first attempt (both retries are duplicates)
    assert [r["id"] for r in rows] == ["p1/0", "p2/2"] and s["duplicates"] == 3
    assert s["prompt_tokens"] == 12 + sum(len(p) for p in retry_prompts)


def test_kept_rows_reverify_and_files_written(tmp_path):
    task, (p1, p2) = problems()
    rows, s = rejection_sample(
        task,
        [p1, p2],
        scripted_sampler({p1.prompt: ["A: 5\n"], p2.prompt: ["A: 3\n"]}, []),
        SynthConfig(k=2, max_new_tokens=8),
    )
    out = tmp_path / "d.jsonl"
    s = write_synth(rows, s, str(out))
    back = [json.loads(x) for x in out.read_text().splitlines()]
    assert back == rows and all(task.check(task.make(2, "+", 3), r["completion"]).correct for r in back)
    assert json.loads((tmp_path / "d.jsonl.summary.json").read_text())["kept"] == 1 == s["kept"]
    assert s["problems_with_kept"] == 1 and s["problem_coverage"] == 0.5


def test_zero_kept_reports_none_cost_and_bad_k():
    task, (p1, _) = problems()
    _, s = rejection_sample(
        task, [p1], scripted_sampler({p1.prompt: ["A: 1\n"]}, []), SynthConfig(k=1, max_new_tokens=4)
    )
    assert s["kept"] == 0 and s["tokens_per_kept"] is None and s["acceptance_rate"] == 0.0
    with pytest.raises(UserError):
        rejection_sample(task, [p1], scripted_sampler({}, []), SynthConfig(k=0))


def test_normalise():
    assert normalise("  A:\n 5 \n") == "A: 5"


def test_load_task_problems(tmp_path):
    from scalinglab.synth.rejection import load_task_problems

    f = tmp_path / "p.jsonl"
    f.write_text(
        '{"id": "a", "prompt": "1+1=?\\n", "answer": "2"}\n{"id": "b", "prompt": "Q?", "answer": "x #### 3"}\n'
    )
    task, probs = load_task_problems("addition", 1, 0, problems_file=str(f))
    assert task.name == "addition" and [p.id for p in probs] == ["a"]
    task, probs = load_task_problems("math", 2, 0, problems_file=str(f))
    assert task.name == "math" and sorted(p.answer for p in probs) == ["2", "3"]  # GSM8K '####' split on load
    _, probs = load_task_problems("addition", 3, 5, difficulty=1)
    assert len(probs) == 3 and all(p.meta["a"] < 10 and p.meta["b"] < 10 for p in probs)
    with pytest.raises(UserError, match="--n"):
        load_task_problems("addition", 0, 0)
