"""End to end on a tiny pre-trained model: synth, annotate and judge, through the CLI.

The fixture pre-trains a depth-1 model on one-digit addition for a few dozen steps: it
learns the answer format and guesses sums, so a few percent of its samples are right —
enough for rejection sampling to keep some (the run is seeded, so the counts are fixed).
"""

import json

import pytest

from scalinglab.tasks import get_task
from scalinglab.tasks.base import Problem


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from scalinglab.train.pretrain import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("synth") / "tiny"
    pretrain(
        PretrainConfig(
            task="addition",
            difficulty=1,
            depth=1,
            steps=60,
            batch_size=8,
            seq_len=64,
            lr=0.01,
            warmup_steps=10,
            val_tokens=256,
            eval_problems=0,
            log_every=20,
            device="cpu",
        ),
        str(out),
    )
    return out


@pytest.fixture(scope="module")
def synth_run(model_dir, tmp_path_factory):
    from scalinglab.synth.rejection import SynthConfig, load_task_problems, rejection_sample, write_synth
    from scalinglab.synth.sampler import local_sampler

    out = tmp_path_factory.mktemp("data") / "add.jsonl"
    task, probs = load_task_problems("addition", 24, 0, 1)
    rows, s = rejection_sample(
        task, probs, local_sampler(str(model_dir), "cpu"), SynthConfig(k=8, max_new_tokens=24, retry=True)
    )
    return out, rows, write_synth(rows, s, str(out))


def test_synth_kept_samples_reverify(synth_run):
    out, rows, s = synth_run
    task = get_task("addition")
    back = [json.loads(x) for x in out.read_text().splitlines()]
    assert back == rows and len(rows) == s["kept"] > 0
    for r in back:
        p = Problem.from_json(r)
        assert r["correct"] is True and task.check(p, r["completion"]).correct, r
        assert r["steps"] == task.split_steps(r["completion"]) and r["meta"]["tokens"] >= 1
    assert s["samples"] == 24 * 8 and s["acceptance_rate"] == s["correct"] / s["samples"]
    assert s["correct"] + s["wrong"] + s["errors"] == s["samples"] and s["errors"] == 0
    assert s["tokens_per_kept"] == pytest.approx((s["prompt_tokens"] + s["generated_tokens"]) / s["kept"])
    assert s["generated_tokens"] >= sum(r["meta"]["tokens"] for r in rows)
    assert s["retries"] == s["wrong"] and 0 <= s["retry_success_rate"] <= 1
    assert json.loads((out.parent / "add.jsonl.summary.json").read_text())["kept"] == s["kept"]


def test_synth_cli_json(model_dir, tmp_path, run_cli):
    out = tmp_path / "c.jsonl"
    code, stdout, _ = run_cli(
        "synth",
        "--task",
        "addition",
        "--model",
        str(model_dir),
        "--n",
        "6",
        "--k",
        "4",
        "--difficulty",
        "1",
        "--max-new-tokens",
        "20",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0
    s = json.loads(stdout)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert s["samples"] == 24 and s["kept"] == len(rows) and s["out"] == str(out)
    task = get_task("addition")
    assert all(task.check(Problem.from_json(r), r["completion"]).correct for r in rows)


def test_synth_cli_bad_input(model_dir, tmp_path, run_cli):
    code, _, err = run_cli(
        "synth", "--task", "nope", "--model", str(model_dir), "--n", "2", "--out", str(tmp_path / "x")
    )
    assert code == 2 and "unknown task 'nope'" in err
    code, _, err = run_cli(
        "synth",
        "--task",
        "addition",
        "--model",
        str(model_dir),
        "--n",
        "2",
        "--set",
        "top_q=0.9",
        "--out",
        str(tmp_path / "x"),
    )
    assert code == 2 and "unknown config key 'top_q' for SynthConfig" in err
    code, _, err = run_cli(
        "synth",
        "--task",
        "addition",
        "--model",
        str(tmp_path / "missing"),
        "--n",
        "2",
        "--out",
        str(tmp_path / "x"),
    )
    assert code == 2 and "no such directory" in err


def test_annotate_cli_real_run(model_dir, synth_run, tmp_path, run_cli):
    data, rows, _ = synth_run
    out = tmp_path / "prm.jsonl"
    code, stdout, _ = run_cli(
        "annotate",
        "--task",
        "addition",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--m",
        "3",
        "--limit",
        "4",
        "--max-new-tokens",
        "16",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0
    s = json.loads(stdout)
    labelled = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(labelled) == s["rows"] == min(4, len(rows))
    for src, r in zip(rows, labelled):
        assert (
            r["id"] == src["id"] and r["steps"] == src["steps"] and len(r["hard"]) == len(r["soft"]) == len(r["steps"])
        )
        assert r["completion_correct"] is True and r["hard"][-1] == 1 and r["soft"][-1] == 1.0  # kept rows are correct
        for h, sf, c in zip(r["hard"], r["soft"], r["meta"]["rollouts_correct"]):
            assert h == int(sf > 0) and (c is None or sf == c / 3)
    assert s["rollouts"] == 3 * sum(len(r["steps"]) - 1 for r in labelled)


def test_model_judge_end_to_end(model_dir, tmp_path, run_cli):
    from scalinglab.synth.judge import model_judge
    from scalinglab.verify.judge import judge_candidates

    fn = model_judge(model_dir, device="cpu", max_new_tokens=12)
    items = [{"question": "3+4=?", "candidate": "A: 7", "reference": "7"}, {"question": "1+1=?", "candidate": "A: 3"}]
    replies = fn([it["question"] for it in items])
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    res = judge_candidates({"tiny": fn, "stub": lambda ps: ["VERDICT: PASS"] * len(ps)}, items)
    assert [len(r.votes) for r in res] == [2, 2] and all(r.votes[1].passed is True for r in res)

    cands = tmp_path / "c.jsonl"
    cands.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "prompt": it["question"], "completion": it["candidate"]}) + "\n"
            for i, it in enumerate(items)
        )
    )
    code, stdout, _ = run_cli(
        "judge",
        "-i",
        str(cands),
        "--model",
        str(model_dir),
        "--model",
        str(model_dir),
        "--max-new-tokens",
        "8",
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0
    out = json.loads(stdout)
    assert out["candidates"] == 2 and len(out["judges"]) == 2 and [r["id"] for r in out["results"]] == ["c0", "c1"]
    assert out["passed"] + out["failed"] + out["undecided"] == 2
    code, _, err = run_cli("judge", "-i", str(cands), "--model", str(model_dir), "--rule", "plurality")
    assert code == 2 and "--rule 'plurality'" in err
