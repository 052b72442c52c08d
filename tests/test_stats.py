"""runner.report.stats against scipy.stats on fixed samples: the t interval of a mean over seeds,
the bootstrap interval (BCa, seeded), the paired ratio of times to target (t interval on log
ratios) and the paired difference of final metrics; n = 1, missed targets, unpaired seeds; the best
learning rate at equal example loads, chosen on tuning seeds. The two-level bootstrap over seeds and
test examples against the analytic standard error of simulated Bernoulli correctness, its coverage,
and its use from runs' per-example records (runner.records) in `echo-report stats` and the verdict."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from runner.report import stats
from runner.report.runs import find_runs

from .test_verdict import write_run

SAMPLES = [np.array([0.931, 0.944, 0.927, 0.951, 0.938]), np.array([12.0, 15.5, 11.25]),
           np.array([1.0, 100.0, 3.0, 7.0])]


@pytest.mark.parametrize("x", SAMPLES)
@pytest.mark.parametrize("conf", [0.95, 0.9])
def test_t_interval_is_scipys(x, conf):
    e = stats.t_interval(x, conf)
    lo, hi = scipy.stats.t.interval(conf, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    assert (e.value, e.lo, e.hi, e.n) == (pytest.approx(x.mean(), rel=1e-12), pytest.approx(lo, rel=1e-12),
                                          pytest.approx(hi, rel=1e-12), len(x))


def test_one_seed_has_no_interval_and_no_spread_a_zero_width_one():
    e = stats.t_interval([0.9])
    assert e.value == 0.9 and math.isnan(e.lo) and math.isnan(e.hi) and e.note == "one seed: no interval"
    b = stats.bootstrap_interval([0.9])
    assert math.isnan(b.lo) and b.note == "one seed: no interval"
    e = stats.t_interval([0.5, 0.5, 0.5])
    assert (e.lo, e.hi) == (0.5, 0.5)
    with pytest.raises(ValueError):
        stats.t_interval([0.5, float("nan")])


def test_bootstrap_is_scipys_bca_with_a_fixed_generator_and_agrees_with_the_t_interval_on_many_seeds():
    x = SAMPLES[0]
    ref = scipy.stats.bootstrap((x,), np.mean, method="BCa", n_resamples=9999, rng=np.random.default_rng(0))
    e = stats.bootstrap_interval(x)
    assert (e.lo, e.hi) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert stats.bootstrap_interval(x) == e  # seeded: the same runs give the same interval
    assert e.lo < x.mean() < e.hi
    # The percentile method against a percentile bootstrap by hand (other resamples: within 5 % of the width).
    p = stats.bootstrap_interval(x, method="percentile")
    rng = np.random.default_rng(1)
    means = x[rng.integers(0, len(x), size=(20000, len(x)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    assert abs(p.lo - lo) < 0.05 * (hi - lo) and abs(p.hi - hi) < 0.05 * (hi - lo)
    # Many normal values: the bootstrap and the t interval nearly coincide (within 10 % of the width).
    y = np.random.default_rng(2).normal(0.9, 0.02, size=60)
    t, b = stats.t_interval(y), stats.bootstrap_interval(y)
    assert abs(t.lo - b.lo) < 0.1 * (t.hi - t.lo) and abs(t.hi - b.hi) < 0.1 * (t.hi - t.lo)


def test_paired_ratio_is_a_t_interval_on_log_ratios():
    base = {0: 1000.0, 1: 1200.0, 2: 1100.0, 3: 1300.0}
    meth = {0: 500.0, 1: 700.0, 2: 450.0, 3: 800.0}
    e = stats.paired_ratio(base, meth)
    b, m = np.log(list(base.values())), np.log(list(meth.values()))
    ci = scipy.stats.ttest_rel(b, m).confidence_interval(0.95)
    lo, hi = scipy.stats.t.interval(0.95, 3, loc=(b - m).mean(), scale=scipy.stats.sem(b - m))
    assert (ci.low, ci.high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert e.value == pytest.approx(math.exp((b - m).mean()), rel=1e-12)
    assert (e.lo, e.hi) == (pytest.approx(math.exp(ci.low), rel=1e-12), pytest.approx(math.exp(ci.high), rel=1e-12))
    assert e.n == 4 and e.note == ""


def test_paired_difference_is_scipys_ttest_rel():
    base = {0: 0.93, 1: 0.94, 2: 0.935}
    meth = {2: 0.94, 0: 0.95, 1: 0.93}  # matched by seed, not by order
    e = stats.paired_difference(base, meth)
    a, b = [meth[s] for s in range(3)], [base[s] for s in range(3)]
    ci = scipy.stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (e.value, e.lo, e.hi) == (pytest.approx(np.mean(np.subtract(a, b)), rel=1e-12),
                                     pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))


def test_missed_targets_are_counted_never_averaged_away():
    base = {0: 1000.0, 1: 1200.0, 2: None}
    meth = {0: 500.0, 1: None, 2: None}
    e = stats.paired_ratio(base, meth, base_name="sgd", method_name="cosine")
    assert math.isnan(e.value) and not e.has_interval and e.n == 3
    assert e.note == "not reached by 2 of 3 seeds (cosine); not reached by 1 of 3 seeds (sgd)"
    e = stats.over_seeds({0: 10.0, 1: None, 2: 12.0})
    assert math.isnan(e.value) and e.note == "not reached by 1 of 3 seeds"
    # One pair: a ratio but no interval. Unpaired seeds are left out and said so.
    e = stats.paired_ratio({0: 1000.0, 5: 900.0}, {0: 500.0, 7: 400.0})
    assert e.value == pytest.approx(2.0) and not e.has_interval
    assert e.note == "one seed: no interval; 2 unpaired seed(s) left out" and e.n == 1 and e.of == 3
    e = stats.paired_difference({0: 0.9, 1: None}, {0: 0.91, 1: 0.92}, base_name="sgd")
    assert math.isnan(e.value) and e.note == "diverged by 1 of 2 seeds (sgd)"


def test_best_lr_is_the_best_mean_at_equal_loads(tmp_path):
    # lr 0.05 ends higher (0.95 at 2000 loads) but lr 0.1 stopped at 1900 where it is at 0.93 and
    # lr 0.05 at 0.90 (0.9 at 1900, 0.95 at 2000: interpolation): at equal loads, 0.1 is the best.
    for s in range(2):
        write_run(tmp_path / f"a{s}", "cosine", seed=s, lr=0.05, T=600, final=0.95)
        write_run(tmp_path / f"b{s}", "cosine", seed=s, lr=0.1, T=500, final=0.93, end=1900)
        write_run(tmp_path / f"c{s}", "cosine", seed=s, lr=1.0, T=500, final=0.99, status="diverged")
    runs = find_runs([tmp_path])
    best = stats.best_lr_at_equal_loads(runs, "test_acc", "max")
    assert best["lr"] == 0.1 and best["loads"] == 1900  # the diverged lr is neither eligible nor the horizon
    assert best["scores"] == {0.05: pytest.approx(0.9), 0.1: pytest.approx(0.93)}
    # Lower is better for a loss: lr 0.05's test_loss (1 - acc / 2) is higher at 1900 loads.
    assert stats.best_lr_at_equal_loads(runs, "test_loss", "min")["lr"] == 0.1


def test_runs_that_stop_at_the_target_rank_their_rates_by_loads_to_the_target(tmp_path):
    # target.stop: each run ends where it reached 0.9; lr 0.1 gets there at 500 loads, lr 0.05 at 800,
    # lr 0.2 misses it with one seed (ranked last, whatever its other seed did).
    for s in range(2):
        write_run(tmp_path / f"a{s}", "cosine", seed=s, lr=0.05, T=800, final=0.9, end=800, **{"target.stop": True})
        write_run(tmp_path / f"b{s}", "cosine", seed=s, lr=0.1, T=500, final=0.9, end=500, **{"target.stop": True})
        write_run(tmp_path / f"c{s}", "cosine", seed=s, lr=0.2, T=300 if s else None, final=0.9 if s else 0.8,
                  end=300 if s else 2000, **{"target.stop": True})
    best = stats.best_lr_at_equal_loads(find_runs([tmp_path]), "test_acc", "max")
    assert best["lr"] == 0.1 and best["by"] == "loads to target"
    assert best["scores"] == {0.05: 800.0, 0.1: 500.0, 0.2: math.inf}


def test_a_difference_without_spread_over_two_seeds_is_inconclusive():
    from runner.report.verdict import judge

    flat = stats.Estimate(0.005, 0.005, 0.005, 2, 2)  # both seeds one test image apart, alike
    assert judge(flat, ">", 0.0) == "inconclusive"
    assert judge(stats.Estimate(0.005, 0.005, 0.005, 3, 3), ">", 0.0) == "holds"
    assert judge(stats.Estimate(0.005, 0.002, 0.008, 2, 2), ">", 0.0) == "holds"


# ------------------------------------------------------------- the two-level bootstrap (seeds x test examples)
def simulate(rng, seeds: int, n: int, acc: float, tau: float) -> np.ndarray:
    """correct[seed, example]: each seed's accuracy is acc + a shift of standard deviation tau, and each
    example is right with that probability, independently."""
    shift = rng.normal(0.0, tau, size=(seeds, 1))
    return (rng.random((seeds, n)) < acc + shift).astype(float)


def analytic_se(seeds: int, n: int, accs, tau: float) -> float:
    """The standard error of method - baseline of the mean over seeds and examples: per method
    Var = tau^2 / S + E[a(1 - a)] / (S N), with E[a(1 - a)] = acc(1 - acc) - tau^2."""
    return math.sqrt(sum(tau ** 2 / seeds + (a * (1 - a) - tau ** 2) / (seeds * n) for a in accs))


@pytest.mark.parametrize("seeds,tau,paired", [(3, 0.01, True), (3, 0.0, True), (3, 0.03, False), (5, 0.02, True)])
def test_the_two_level_bootstrap_se_is_the_analytic_se_within_15_percent(seeds, tau, paired):
    # 80 simulated experiments (500 test examples, accuracies 0.80 and 0.78); the root-mean-square
    # bootstrap SE against the analytic SE (one experiment's seed spread rests on 2 degrees of freedom
    # with 3 seeds; 80 of them put the RMS within about 6 % of its expectation; over other generator
    # seeds it fell within 0.93-1.10). With tau = 0 every seed differs by test-example noise alone: a
    # bootstrap that resampled seeds and then examples plainly would count that noise twice (about
    # 1.29 times the SE); with tau = 0.03 the seeds dominate, where a plain resample of 3 seeds would
    # be 18 % short.
    rng = np.random.default_rng(0)
    n, accs = 500, (0.80, 0.78)
    var = [stats.bootstrap_se(simulate(rng, seeds, n, accs[0], tau), simulate(rng, seeds, n, accs[1], tau),
                              paired=paired, n_resamples=300, seed=i) ** 2 for i in range(80)]
    want = analytic_se(seeds, n, accs, tau)
    assert math.sqrt(np.mean(var)) == pytest.approx(want, rel=0.15)


def test_the_two_level_interval_covers_the_true_difference_with_three_seeds():
    # 400 simulated experiments of 3 seeds whose shifts (sd 0.03) dominate: the interval (bootstrap SE
    # with a Satterthwaite t) holds the true difference -0.02 in 93.5 % of them; a percentile interval
    # of the same replicates did in 74 % (3 resampled seeds have no t tails). Binomial sd at 0.95: 0.011.
    rng = np.random.default_rng(0)
    hits = sum(e.lo <= -0.02 <= e.hi for e in (
        stats.two_level_bootstrap(simulate(rng, 3, 500, 0.80, 0.03), simulate(rng, 3, 500, 0.78, 0.03),
                                  n_resamples=300, seed=i) for i in range(400)))
    assert 0.90 <= hits / 400 <= 0.985


def test_the_same_examples_for_both_methods_make_a_consistent_gain_count_the_test_set():
    # The case: the method is right on 15 more of 2,000 test images than the baseline, on every
    # seed alike. Over seeds alone that is a zero-width interval; over the test set the gain has the
    # binomial standard error sqrt(q (1 - q) / N), q = 15 / 2000 (the other examples agree exactly).
    rng = np.random.default_rng(3)
    base = simulate(rng, 3, 2000, 0.8, 0.0)
    wrong = np.flatnonzero(base[0] == 0)
    base[:] = base[0]  # the same predictions on every seed
    meth = base.copy()
    meth[:, wrong[:15]] = 1.0
    e = stats.two_level_bootstrap(base, meth, paired=True, n_resamples=4000, seed=0)
    assert e.value == pytest.approx(15 / 2000) and e.basis == stats.SEEDS_AND_EXAMPLES
    q = 15 / 2000
    se = math.sqrt(q * (1 - q) / 2000)
    assert stats.bootstrap_se(base, meth, n_resamples=4000) == pytest.approx(se, rel=0.1)
    assert e.lo == pytest.approx(q - 1.96 * se, abs=0.6 * se) and e.hi == pytest.approx(q + 1.96 * se, abs=0.6 * se)
    seeds_only = stats.paired_difference(dict(enumerate(base.mean(1))), dict(enumerate(meth.mean(1))))
    assert seeds_only.lo == seeds_only.hi == pytest.approx(q)  # what the seeds alone would claim
    # Seeded: the same arrays give the same interval.
    assert stats.two_level_bootstrap(base, meth, paired=True, n_resamples=4000, seed=0) == e


def test_a_perplexity_ratio_is_the_exponentiated_difference_of_mean_losses():
    rng = np.random.default_rng(5)
    base = rng.gamma(4.0, 1.25, size=(3, 300))  # losses: mean 5, perplexity about e^5
    meth = base - 0.1 + rng.normal(0, 0.05, size=base.shape)
    e = stats.two_level_bootstrap(meth, base, paired=True, exp=True)  # baseline ÷ method of exp(mean loss)
    assert e.value == pytest.approx(math.exp(base.mean() - meth.mean()), rel=1e-12)
    d = stats.two_level_bootstrap(meth, base, paired=True)
    assert (e.lo, e.hi) == (pytest.approx(math.exp(d.lo)), pytest.approx(math.exp(d.hi)))
    one = stats.two_level_bootstrap(base[:1], meth[:1])
    assert not one.has_interval and one.note == "one seed: no interval"


def test_the_best_lr_is_chosen_on_the_tuning_seeds_only(tmp_path):
    # On seeds 0 and 1, lr 0.1 is best; on seed 2, lr 0.05 is far better. Chosen on seeds 0, 1: 0.1.
    for s in range(3):
        write_run(tmp_path / f"a{s}", "cosine", seed=s, lr=0.05, T=600, final=0.99 if s == 2 else 0.90)
        write_run(tmp_path / f"b{s}", "cosine", seed=s, lr=0.1, T=600, final=0.93)
        write_run(tmp_path / f"c{s}", "cosine", seed=s, lr=0.2, T=600, final=0.91)
    runs = find_runs([tmp_path])
    assert stats.best_lr_at_equal_loads(runs, "test_acc", "max")["lr"] == 0.05  # all seeds: the lucky seed wins
    b = stats.best_lr_at_equal_loads(runs, "test_acc", "max", seeds=[0, 1])
    assert (b["lr"], b["seeds"], b["grid"], b["edge"]) == (0.1, [0, 1], [0.05, 0.1, 0.2], False)


def test_echo_report_stats_chooses_on_tuning_seeds_and_compares_on_measuring_seeds(tmp_path):
    import csv

    from runner.records import write_final_examples
    from runner.report import cli as report_cli

    # cosine: 0.1 is best on seeds 0, 1; 0.05 would win on seeds 2-4. sgd: 0.05. Each run keeps its
    # per-example results (runner.records' file): cosine is right on 10 more test examples.
    rng = np.random.default_rng(1)
    right = rng.random(1000) < 0.9
    better = right.copy()
    better[np.flatnonzero(~right)[:10]] = True
    for s in range(5):
        for lr, fin in ((0.05, 0.99 if s >= 2 else 0.90), (0.1, 0.93), (0.2, 0.91)):
            d = write_run(tmp_path / "m" / f"cos-{lr}-{s}", "cosine", seed=s, lr=lr, T=600, final=fin)
            write_final_examples(d, better, "classification")
        for lr in (0.025, 0.05, 0.1):
            d = write_run(tmp_path / "m" / f"sgd-{lr}-{s}", "sgd", seed=s, lr=lr, T=600,
                          final=0.92 if lr == 0.05 else 0.9)
            write_final_examples(d, right, "classification")
    out = tmp_path / "st"
    assert report_cli.main(["stats", "--tuning-seeds", "0,1", "--measuring-seeds", "2,3,4", str(tmp_path / "m"),
                            "--out", str(out)]) == 0
    with open(tmp_path / "st.csv") as f:
        rows = {(r["method"], float(r["lr"])): r for r in csv.DictReader(f)}
    cos = rows["cosine", 0.1]
    assert cos["best_lr"] == "True" and rows["cosine", 0.05]["best_lr"] == "False"
    assert (cos["chosen_on_seeds"], cos["measured_on_seeds"], cos["diff_final_basis"]) == (
        "0, 1", "2, 3, 4", "seeds × test examples")
    want = stats.two_level_bootstrap(np.tile(right, (3, 1)).astype(float), np.tile(better, (3, 1)).astype(float))
    assert [float(cos[k]) for k in ("diff_final", "diff_final_lo", "diff_final_hi")] == pytest.approx(
        [0.01, want.lo, want.hi], rel=1e-9)
    md = (tmp_path / "st.md").read_text()
    assert "seeds × test examples" in md and "chosen on seeds" in md
    assert report_cli.main(["stats", "--tuning-seeds", "0,1", "--measuring-seeds", "1,2", str(tmp_path / "m")]) == 2
    with pytest.raises(SystemExit) as bad:  # argparse's usage error: exit 2
        report_cli.main(["stats", "--tuning-seeds", "zero", str(tmp_path / "m")])
    assert bad.value.code == 2


def test_a_perplexity_ratio_from_the_runs_per_block_losses(tmp_path):
    from runner.records import load_final_examples, write_final_examples

    rng = np.random.default_rng(2)
    loss = rng.gamma(4.0, 1.25, size=(2, 3, 64))  # baseline, method; 3 seeds; 64 test blocks
    loss[1] -= 0.2
    sides = []
    for k, name in enumerate(("sgd", "cosine")):
        for s in range(3):
            write_final_examples(write_run(tmp_path / f"{name}{s}", name, seed=s), loss[k, s], "language")
        sides.append([r for r in find_runs([tmp_path]) if r.method == name])
    e = stats.examples_difference(*sides, "test_ppl", ratio=True)
    got = [np.stack([load_final_examples(r.dir) for r in sorted(side, key=lambda r: r.seed)]) for side in sides]
    assert e.value == pytest.approx(math.exp(got[0].mean() - got[1].mean()), rel=1e-6) and e.value > 1
    want = stats.two_level_bootstrap(got[1], got[0], exp=True)
    assert (e.lo, e.hi, e.basis) == (pytest.approx(want.lo), pytest.approx(want.hi), stats.SEEDS_AND_EXAMPLES)
    assert stats.examples_difference(*sides, "test_acc") is None  # losses are not an accuracy's right-or-wrong


def test_per_example_losses_make_a_loss_or_perplexity_interval_not_another_metrics(tmp_path):
    # Language runs with per-block losses: the verdict's perplexity ratio and loss difference use them;
    # a difference of final perplexities (not a mean of per-example values) stays over seeds only.
    import csv

    import yaml

    from runner.records import write_final_examples
    from runner.report import cli as report_cli

    rng = np.random.default_rng(4)
    loss = rng.gamma(4.0, 1.25, size=64)
    for s in range(3):
        for name, shift in (("sgd", 0.0), ("cosine", -0.2)):
            d = write_run(tmp_path / "m" / f"{name}{s}", name, seed=s, final=0.9)
            write_final_examples(d, loss + shift + 0.01 * s, "language")
            recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
            mean = float(np.mean(loss + shift + 0.01 * s))
            for r in recs:
                r.update(test_ppl=math.exp(mean), test_loss=mean)
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    kinds = (("R", "ratio", "test_ppl"), ("L", "difference", "test_loss"), ("P", "difference", "test_ppl"))
    claims = [{"id": i, "claim": i, "figure": "f", "runs": "m", "quantity": q, "of": of, "method": "cosine",
               "lr": 0.05, "holds_if": "> 0"} for i, q, of in kinds]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"metric": "test_ppl", "claims": claims}))
    assert report_cli.main(["verdict", str(tmp_path / "s.yaml"), str(tmp_path), "--out", str(tmp_path / "v")]) == 0
    with open(tmp_path / "v.csv") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert (rows["R"]["basis"], rows["L"]["basis"], rows["P"]["basis"]) == (
        "seeds × test examples", "seeds × test examples", "seeds only")
    assert float(rows["R"]["value"]) == pytest.approx(math.exp(0.2), rel=1e-3)  # float16 losses
