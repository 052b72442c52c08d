"""The verdict table from a spec of claims, on synthetic run directories written here in the real
format (.hydra/config.yaml, metrics.jsonl, summary.json) whose answers are known by construction:
test accuracy rises linearly to the target 0.9 at exactly T example loads, so each seed's loads (and
sim_s) to target are chosen, and so are the paired ratios and their intervals."""
from __future__ import annotations

import copy
import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml

from runner.report import cli as report_cli

# The resolved config echo-run writes (digits, SmallCNN), as in .hydra/config.yaml.
BASE_CONFIG = {
    "data": {"name": "digits", "task": "classification", "root": None, "download": True, "batch_size": 32,
             "test_fraction": 0.2, "split_seed": 0, "augment": False, "augment_on_echo": False,
             "max_train_examples": None, "max_test_examples": None},
    "model": {"_target_": "runner.models.SmallCNN", "width": 32},
    "schedule": {"name": "none", "p": 0.5, "p_max": 1.0, "p_min": 0.1, "gamma": 0.5, "milestones": [0.5, 0.75]},
    "echo": {"policy": "stochastic", "factor": 2.0, "buffer": 1024},
    "optim": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "nesterov": False, "lr_schedule": "cosine",
              "warmup": 0.0, "lr_min_ratio": 0.0, "milestones": [0.5, 0.75], "gamma": 0.1, "grad_clip": None},
    "budget": {"example_loads": 2000, "steps": None, "sim_s": None},
    "eval": {"every_loads": 100, "batch_size": 512},
    "target": {"metric": "test_acc", "value": 0.9, "mode": "max"},
    "hardware": {"name": "none", "load_s_per_example": None, "workers": 1, "step_s": None, "ratio": None,
                 "prefetch": 2, "comm_latency_s": 0.0, "comm_bandwidth_Bps": None},
    "comm": {"name": "none", "k": 4, "period": 4, "warmup_steps": 0},
    "launcher": {"name": "local", "nproc_per_node": 1, "nnodes": "1"},
    "seed": 0, "resume": "auto", "name": None,
}
METHOD_CONFIG = {  # what each method label is in config terms (runner.summary.method_label inverts it)
    "sgd": {}, "cosine": {"schedule.name": "cosine"}, "linear": {"schedule.name": "linear"},
    "step": {"schedule.name": "step"}, "constant(p=0.5)": {"schedule.name": "constant", "schedule.p": 0.5},
    "adaptive": {"echo.policy": "adaptive"},
    "cosine+on_load": {"schedule.name": "cosine", "comm.name": "on_load"},
}


def write_run(d: Path, method: str = "sgd", *, seed: int = 0, lr: float = 0.05, T=1000, final: float = 0.93,
              end: int = 2000, every: int = 100, wall_rate: float = 0.001, sim_rate=None, world_size: int = 1,
              status: str = "complete", steps_per_load: float = 1 / 32, **overrides) -> Path:
    """One run directory. test_acc = 0.1 + 0.8 * min(1, loads / T): exactly 0.9 (the target) at T
    loads; the last record's test_acc is ``final``; T=None never reaches the target (ends below it).
    wall_s and sim_s are proportional to the loads (sim_s None: no hardware profile)."""
    cfg = copy.deepcopy(BASE_CONFIG)
    sets = {**METHOD_CONFIG[method], "seed": seed, "optim.lr": lr, "launcher.nproc_per_node": world_size, **overrides}
    for key, v in sets.items():
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = v
    records = []
    for loads in range(0, end + 1, every):
        acc = 0.1 + 0.8 * min(1.0, loads / T) if T else 0.1 + 0.7 * loads / end
        step = round(loads * steps_per_load)
        records.append({"step": step, "example_loads": loads, "epoch": loads / 1437, "echo_steps": 0,
                        "wall_s": loads * wall_rate, "eval_s": 0.01,
                        "sim_s": None if sim_rate is None else loads * sim_rate,
                        "idle_s": 0.0, "real_idle_s": 0.0, "lr": lr, "p_load": 1.0,
                        "train_loss": None if loads == 0 else 1.0 - acc / 2,
                        "comm_rounds": step if world_size > 1 else 0,
                        "comm_bytes": step * 1000 if world_size > 1 else 0, "sync_rounds": 0, "world_size": world_size,
                        "test_loss": 1.0 - acc / 2, "test_acc": acc})
    records[-1].update(test_acc=final, test_loss=1.0 - final / 2)
    if status == "diverged":
        records[-1]["train_loss"] = "nan"
    first = next((r for r in records if r["test_acc"] >= 0.9), None)
    clocks = ("example_loads", "step", "epoch", "wall_s", "sim_s")
    summary = {"status": status, "final": records[-1],
               "target": {"metric": "test_acc", "value": 0.9, "mode": "max",
                          "reached": None if first is None else {k: first[k] for k in clocks}},
               "records": len(records), "config_hash": f"{abs(hash(str(sets))):016x}"[:16], "method": method,
               "world_size": world_size, "git_revision": None, "versions": {"python": "3.11"}}
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (d / "summary.json").write_text(json.dumps(summary, indent=2))
    return d


# Loads to target per seed 0, 1, 2 (the answers are built from these).
SGD_T, SGD_FINAL = [1000, 1200, 1100], [0.930, 0.940, 0.935]
COSINE_T = [400, 500, 500]                  # at lr 0.1, its best lr at equal loads
LINEAR_T = [1500, 1700, 1600]
CONSTANT_FINAL = [0.940, 0.930, 0.940]      # sgd + 0.01, - 0.01, + 0.005: no clear difference
STEP_T = [800, 900, None]                   # seed 2 never reaches the target
SIM_T = {1.0: ([1000, 1200, 1100], [1000, 1100, 1200]), 4.0: ([1000, 1200, 1100], [700, 800, 800])}  # sgd, adaptive


def make_runs(root: Path) -> Path:
    m = root / "methods"
    for s in range(3):
        write_run(m / f"sgd-0.05-{s}", "sgd", seed=s, T=SGD_T[s], final=SGD_FINAL[s])
        write_run(m / f"sgd-0.5-{s}", "sgd", seed=s, lr=0.5, T=1500 + 100 * s, final=0.91 + 0.005 * s)
        # cosine: lr 0.05 ends higher at 2000 loads, but lr 0.1 stopped at 1900 (its budget ran out
        # first) and is better there: at equal loads (1900) the best lr is 0.1.
        write_run(m / f"cosine-0.05-{s}", "cosine", seed=s, T=600, final=0.95)
        write_run(m / f"cosine-0.1-{s}", "cosine", seed=s, lr=0.1, T=COSINE_T[s], final=0.93, end=1900)
        write_run(m / f"linear-{s}", "linear", seed=s, T=LINEAR_T[s], final=0.93)
        write_run(m / f"constant-{s}", "constant(p=0.5)", seed=s, T=SGD_T[s], final=CONSTANT_FINAL[s])
        write_run(m / f"step-{s}", "step", seed=s, T=STEP_T[s], final=0.93 if STEP_T[s] else 0.85)
        for R, (t_sgd, t_ad) in SIM_T.items():
            hw = {"hardware.name": "ratio", "hardware.ratio": R, "hardware.step_s": 0.01}
            write_run(root / "ratio" / f"sgd-R{R:g}-{s}", "sgd", seed=s, T=t_sgd[s], sim_rate=0.01 * R, **hw)
            write_run(root / "ratio" / f"adaptive-R{R:g}-{s}", "adaptive", seed=s, T=t_ad[s], sim_rate=0.01 * R, **hw)
    return root


SPEC = """
baseline: sgd
claims:
  - id: C1
    claim: Cosine echoing reaches 90% in fewer example loads than SGD
    figure: results/figures/methods.png
    runs: methods
    quantity: speedup
    of: example_loads
    method: cosine
    holds_if: "> 1"
  - id: C2
    claim: Linear echoing reaches 90% in fewer example loads than SGD
    figure: results/figures/methods.png
    runs: {dir: methods, where: {schedule.name: [none, linear]}}
    quantity: speedup
    of: example_loads
    method: linear
    lr: 0.05
    holds_if: "> 1"
  - id: C3
    claim: Constant p = 0.5 ends with a higher test accuracy than SGD
    figure: results/figures/methods.png
    runs: methods
    quantity: difference
    of: test_acc
    method: constant(p=0.5)
    lr: 0.05
    holds_if: "> 0"
  - id: C4
    claim: Adaptive echoing reaches the target sooner in simulated time
    figure: results/figures/advisor.png
    runs: ratio
    quantity: speedup
    of: sim_s
    method: adaptive
    lr: same
    holds_if: "> 1"
    when: hardware.ratio
  - id: C5
    claim: The step schedule needs fewer loads than SGD
    figure: results/figures/methods.png
    runs: methods
    quantity: speedup
    of: example_loads
    method: step
    lr: 0.05
    holds_if: "> 1"
"""


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = make_runs(tmp_path_factory.mktemp("verdict"))
    for s in range(3):  # a worse rate beyond each tuned side's best, so that neither best is at its grid's edge
        write_run(root / "methods" / f"sgd-0.01-{s}", "sgd", seed=s, lr=0.01, T=1900, final=0.9)
        write_run(root / "methods" / f"cosine-0.2-{s}", "cosine", seed=s, lr=0.2, T=1500, final=0.9)
    return root


def log_ratio_interval(base, method) -> tuple:
    """The reference: scipy's paired t test on the logs, exponentiated."""
    b, m = np.log(base), np.log(method)
    ci = scipy.stats.ttest_rel(b, m).confidence_interval(0.95)
    return float(np.exp(np.mean(b - m))), float(np.exp(ci.low)), float(np.exp(ci.high))


def test_the_verdicts_are_the_known_answers(runs_dir, tmp_path):
    spec = tmp_path / "claims.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "verdict"
    assert report_cli.main(["verdict", str(spec), str(runs_dir), "--out", str(out)]) == 0
    with open(tmp_path / "verdict.csv") as f:
        rows = list(csv.DictReader(f))
    by = {(r["id"], r["condition"]): r for r in rows}
    assert sorted(by) == [("C1", ""), ("C2", ""), ("C3", ""), ("C4", "hardware.ratio=1, lr=0.05"),
                          ("C4", "hardware.ratio=4, lr=0.05"), ("C5", "")]

    def check(row, want, verdict):
        assert [float(row[k]) for k in ("value", "lo", "hi")] == pytest.approx(want, rel=1e-9)
        assert row["verdict"] == verdict and row["n"] == "3"

    # C1: each at its own best lr at equal loads: cosine 0.1 (not 0.05, which ends higher at 2000
    # loads but is worse at 1900), sgd 0.05.
    assert (by["C1", ""]["method_lr"], by["C1", ""]["baseline_lr"]) == ("0.1", "0.05")
    check(by["C1", ""], log_ratio_interval(SGD_T, COSINE_T), "holds")
    check(by["C2", ""], log_ratio_interval(SGD_T, LINEAR_T), "does not hold")
    d = np.subtract(CONSTANT_FINAL, SGD_FINAL)
    ci = scipy.stats.ttest_rel(CONSTANT_FINAL, SGD_FINAL).confidence_interval(0.95)
    check(by["C3", ""], [d.mean(), ci.low, ci.high], "inconclusive")
    for R, verdict in ((1.0, "inconclusive"), (4.0, "holds")):
        t_sgd, t_ad = SIM_T[R]
        check(by["C4", f"hardware.ratio={R:g}, lr=0.05"],
              log_ratio_interval(np.multiply(t_sgd, R), np.multiply(t_ad, R)), verdict)
    c5 = by["C5", ""]
    assert c5["verdict"] == "inconclusive" and c5["value"] == "" and c5["note"] == "not reached by 1 of 3 seeds (step)"
    assert {r["claim_verdict"] for r in rows if r["id"] == "C4"} == {"holds only when hardware.ratio=4, lr=0.05"}
    # No tuning seeds in this spec: every seed chose and measured, and every row says its interval is over seeds.
    assert {r["basis"] for r in rows} == {"seeds only"}

    # The Markdown table: one row per claim, in the spec's order, with the four columns.
    md = (tmp_path / "verdict.md").read_text()
    lines = [re.sub(" +", " ", ln) for ln in md.splitlines() if ln.startswith("|")]
    assert lines[0].startswith("| claim | figure | measured effect (95% interval, n seeds) | verdict |")
    body = lines[2:]
    assert len(body) == 5
    assert [ln.rsplit("|", 2)[1].strip() for ln in body] == [
        "holds", "does not hold", "inconclusive", "holds only when hardware.ratio=4, lr=0.05", "inconclusive"]
    assert "**C1**" in body[0] and "[methods.png](results/figures/methods.png)" in body[0]
    ratio, lo, hi = log_ratio_interval(SGD_T, COSINE_T)
    assert (f"{ratio:#.3g}× [{lo:#.3g}, {hi:#.3g}] (n=3 seeds), interval over seeds only, lr 0.1 vs 0.05 (rates "
            "chosen and the effect measured on the same seeds)") in body[0]  # no tuning_seeds in this spec
    assert "hardware.ratio=1, lr=0.05: " in body[3] and "<br>hardware.ratio=4, lr=0.05: " in body[3]
    assert "not reached by 1 of 3 seeds (step)" in body[4]


def test_a_bad_spec_is_one_paragraph_and_exit_2(runs_dir, tmp_path, capsys):
    good = {"id": "X", "claim": "c", "figure": "f", "runs": "methods", "quantity": "speedup", "of": "step",
            "method": "cosine", "holds_if": "> 1"}

    def one(**change):
        claim = {k: v for k, v in {**good, **change}.items() if v is not None}
        return yaml.safe_dump({"claims": [claim]})

    cases = {
        "claims: []": "non-empty list under `claims:`",
        one(holds_if=None): "lacks holds_if",
        one(quantity="speed"): "quantity 'speed' is not one of",
        one(holds_if="big"): "is not '> X', '< X'",
        one(holds_if="= 1 ±"): "is not '> X', '< X'",
        "tuning_seeds: [0, 1]\nmeasuring_seeds: [1, 2]\n" + one(): "seed(s) [1] are in both",
        "tuning_seeds: zero\n" + one(): "tuning_seeds in the verdict spec is a list of seeds",
        one(colour="red"): "unknown key(s) colour",
        # ratio/ holds each seed under two hardware ratios: without `when: hardware.ratio` a pairing by
        # seed is ambiguous, and refused
        one(runs="ratio", method="adaptive", of="sim_s"): "have seed 0",
    }
    for i, (text, message) in enumerate(cases.items()):
        spec = tmp_path / f"bad{i}.yaml"
        spec.write_text(text)
        assert report_cli.main(["verdict", str(spec), str(runs_dir), "--out", str(tmp_path / "v")]) == 2, text
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (text, err)
    assert not (tmp_path / "v.md").exists()


def test_a_claim_reads_a_list_of_directories_together(runs_dir, tmp_path):
    # The method's runs in one sub-directory, the baseline's in another (as the augmentation figure's
    # re-augmented echoing beside the schedules' runs): the same answer as C1 read from one directory.
    split = tmp_path / "split"
    for sub, keep in (("mine", "cosine"), ("theirs", "sgd")):
        for d in (runs_dir / "methods").iterdir():
            if d.name.startswith(keep + "-"):
                shutil.copytree(d, split / sub / d.name)
    spec = tmp_path / "claims.yaml"
    c1 = SPEC.split("  - id: C2")[0]
    spec.write_text(c1.replace("runs: methods", "runs: {dir: [mine, theirs]}")
                    + "  - id: C6\n    claim: missing\n    figure: f.png\n    runs: {dir: [mine, nowhere]}\n"
                      "    quantity: speedup\n    of: example_loads\n    method: cosine\n    holds_if: \"> 1\"\n")
    assert report_cli.main(["verdict", str(spec), str(split), "--out", str(tmp_path / "v")]) == 0
    with open(tmp_path / "v.csv") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert (rows["C1"]["method_lr"], rows["C1"]["baseline_lr"]) == ("0.1", "0.05")
    assert [float(rows["C1"][k]) for k in ("value", "lo", "hi")] == pytest.approx(
        log_ratio_interval(SGD_T, COSINE_T), rel=1e-9)
    assert rows["C6"]["verdict"] == "no records"
