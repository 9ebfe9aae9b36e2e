"""$/M tokens and $ per answer."""

import pytest

from scalinglab.errors import UserError
from scalinglab.tokenomics.catalog import get_hardware, get_model
from scalinglab.tokenomics.cost import answer_cost, cost_curve, plot_cost_curve, token_prices
from scalinglab.tokenomics.memory import Parallel, ServeConfig
from scalinglab.tokenomics.roofline import StepModel

CFG = ServeConfig(par=Parallel(tp=8), weights_dtype="fp8")


def _s(hw="H100", model="Llama-3.1-405B"):
    return StepModel(get_model(model), get_hardware(hw), CFG)


def test_output_price_is_rent_over_tokens():
    s = _s()
    r = token_prices(s, context=2048, batch=64)
    step = s.decode(64, 2048).seconds
    assert r["usd_per_m_output"] == pytest.approx(8 * 2.49 / 3600 / (64 / step) * 1e6)


def test_answer_cost_grows_faster_than_linearly_with_cot():
    s = _s("H200")
    short, long = answer_cost(s, 1000, 2000), answer_cost(s, 1000, 20000)
    assert long["usd_per_answer"] > 10 * short["usd_per_answer"]  # longer answer AND smaller batch
    assert long["decode_batch"] < short["decode_batch"]


def test_worked_example_h200_cheaper_per_answer_than_h100():
    h100, h200 = answer_cost(_s("H100"), 1000, 19000), answer_cost(_s("H200"), 1000, 19000)
    assert (h100["decode_batch"], h200["decode_batch"]) == (17, 63)  # the 20k-context batch of test_memory
    assert h200["usd_per_answer"] < 0.6 * h100["usd_per_answer"]


def test_vote_shares_prompt_prefill_and_kv():
    s = _s("H200")
    one = answer_cost(s, 8000, 4000)
    vote = answer_cost(s, 8000, 4000, n_samples=8)
    unshared = answer_cost(s, 8000, 4000, n_samples=8, shared_prefix=False)
    assert vote["prefill_usd"] == pytest.approx(one["prefill_usd"])
    assert unshared["prefill_usd"] == pytest.approx(8 * one["prefill_usd"])
    assert vote["decode_batch"] > unshared["decode_batch"]
    assert vote["usd_per_answer"] < unshared["usd_per_answer"]


def test_errors_and_plot(tmp_path):
    with pytest.raises(UserError):
        answer_cost(_s(), 0, 100)
    with pytest.raises(UserError, match="does not fit"):
        answer_cost(_s(), 1000, 5_000_000)
    out = tmp_path / "c.png"
    plot_cost_curve({"405B/H200": cost_curve(_s("H200"), 1000, [1000, 4000])}, str(out))
    assert out.stat().st_size > 1000
