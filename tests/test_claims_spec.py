"""The project's own verdict spec, scripts/claims.yaml: its ids are unique, its method labels are
what the runner writes for the Makefile's configurations, and the speed-up figure ranks runs that
stop at the target by loads (the rows' known answers are checked in test_claims_known.py)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from runner.report.verdict import load_spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "scripts" / "claims.yaml"
END, EVERY, BATCH = 6400, 100, 64

# Per method label: loads to target per seed (multiples of EVERY: test_acc is exactly the target 0.9
# there), final test_acc per seed, steps per load, wall and simulated seconds per load, and, for the
# data-parallel ones, world size and communication rounds per step. Chosen so that the spec's rows
# come out as every kind of verdict.
M = {
    "sgd": dict(T=[3000, 3600, 3300], final=[0.930, 0.935, 0.932], spl=1 / 64, wall=1e-3, sim=4e-3),
    "constant(p=0.5)": dict(T=[1700, 2000, 1800], final=[0.934, 0.941, 0.935], spl=2 / 64, wall=2e-3, sim=4.1e-3),
    "constant(p=0.25)": dict(T=[1300, 1500, 1400], final=[0.931, 0.934, 0.936], spl=4 / 64, wall=4e-3, sim=4.4e-3),
    "constant(p=0.125)": dict(T=[1100, 1400, 1000], final=[0.93, 0.93, 0.93], spl=8 / 64, wall=8e-3, sim=8e-3),
    "constant(p=0.0625)": dict(T=[1000, 1300, None], final=[0.93, 0.93, 0.88], spl=16 / 64, wall=16e-3, sim=16e-3),
    "cosine": dict(T=[2000, 2200, 2100], final=[0.945, 0.950, 0.947], spl=3 / 64, wall=3e-3, sim=4e-3),
    "linear": dict(T=[2000, 2200, 2100], final=[0.950, 0.940, 0.944], spl=2.5 / 64, wall=3e-3, sim=4e-3),
    "step": dict(T=[2000, 2200, 2100], final=[0.940, 0.941, 0.942], spl=2 / 64, wall=3e-3, sim=4e-3),
    "constant(p=0.25)+reaug": dict(T=[1300, 1500, 1400], final=[0.941, 0.943, 0.942], spl=4 / 64, wall=4e-3, sim=4e-3),
    "sgd+allreduce": dict(T=[3000, 3600, 3300], final=[0.930, 0.935, 0.932], spl=1 / 64, ws=2, cps=1.0),
    "sgd+grad_accum": dict(T=[4000, 4400, 4200], final=[0.900, 0.905, 0.910], spl=1 / 256, ws=2, cps=1.0),
    "sgd+periodic": dict(T=[3000, 3600, 3300], final=[0.925, 0.930, 0.928], spl=1 / 64, ws=2, cps=0.25),
    "constant(p=0.5)+on_load": dict(T=[1700, 2000, 1800], final=[0.936, 0.940, 0.938], spl=2 / 64, ws=2, cps=0.5),
    "constant(p=0.5)+probabilistic": dict(T=[1700, 2000, 1800], final=[0.925, 0.945, 0.935], spl=2 / 64, ws=2,
                                          cps=0.5),
    "sgd+periodic+nesterov": dict(T=[3000, 3600, 3300], final=[0.915, 0.918, 0.917], spl=1 / 64, ws=2, cps=0.25),
    "constant(p=0.5)+on_load+nesterov": dict(T=[1700, 2000, 1800], final=[0.940, 0.944, 0.943], spl=2 / 64, ws=2,
                                             cps=0.5),
    "constant(p=0.5)+probabilistic+nesterov": dict(T=[1700, 2000, 1800], final=[0.934, 0.936, 0.945], spl=2 / 64,
                                                   ws=2, cps=0.5),
}
# The language model's final perplexity per seed (claim M2); its runs have no accuracy.
PPL = {"sgd": [180.0, 175.0, 178.0], "constant(p=0.25)": [150.0, 149.0, 156.0]}


def config(label: str, seed: int, language: bool) -> dict:
    comm = next((c for c in ("allreduce", "grad_accum", "periodic", "on_load", "probabilistic") if f"+{c}" in label),
                "none")
    return {
        "data": {"name": "python_docs" if language else "fashion_mnist",
                 "task": "language" if language else "classification", "batch_size": BATCH},
        "model": {"_target_": "runner.models.tiny_gpt2" if language else "runner.models.SmallCNN", "width": 8},
        "schedule": {"name": "none"}, "echo": {"policy": "stochastic"},
        "optim": {"name": "sgd", "lr": 0.05, "lr_schedule": "constant"},
        "budget": {"example_loads": END, "steps": None, "sim_s": None},
        "eval": {"every_loads": EVERY, "batch_size": 1000},
        "target": ({"metric": "test_ppl", "value": 100.0, "mode": "min"} if language
                   else {"metric": "test_acc", "value": 0.9, "mode": "max"}),
        "hardware": {"name": "ratio", "ratio": 4.0, "step_s": 0.01},
        "comm": {"name": comm, "outer_optim": "nesterov" if label.endswith("+nesterov") else None},
        "launcher": {"name": "torchrun" if comm != "none" else "local", "nproc_per_node": M.get(label, {}).get("ws", 1)},
        "seed": seed,
    }


def write(d: Path, label: str, seed: int, language: bool = False) -> None:
    """One finished run in the real format (.hydra/config.yaml, metrics.jsonl, summary.json)."""
    p = M[label]
    ws, T, final = p.get("ws", 1), p["T"][seed], p["final"][seed]
    records = []
    for loads in range(0, END + 1, EVERY):
        step = round(loads * p["spl"])
        r = {"step": step, "example_loads": loads, "epoch": loads / 60000, "echo_steps": 0,
             "wall_s": loads * p.get("wall", 1e-3), "eval_s": 0.0, "sim_s": loads * p.get("sim", 4e-3),
             "idle_s": 0.0, "real_idle_s": 0.0, "lr": 0.05, "p_load": 1.0, "train_loss": 1.0,
             "comm_rounds": round(step * p.get("cps", 0)), "comm_bytes": 0, "sync_rounds": 0, "world_size": ws}
        if language:
            r["test_ppl"] = 1000.0 - (1000.0 - PPL[label][seed]) * loads / END
        else:
            r["test_acc"] = 0.1 + 0.8 * min(1.0, loads / T) if T else 0.1 + 0.79 * loads / END
        records.append(r)
    if not language:
        records[-1]["test_acc"] = final
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config(label, seed, language), sort_keys=False))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (d / "summary.json").write_text(json.dumps({"status": "complete", "final": records[-1], "method": label,
                                                "world_size": ws, "records": len(records)}))


@pytest.fixture(scope="module")
def spec() -> dict:
    return load_spec(SPEC)


def test_claim_ids_are_unique(spec):
    ids = [c["id"] for c in spec["claims"]]
    assert len(ids) == len(set(ids))


# The overrides of the Makefile's sweeps that produce each label above (runner.summary.method_label).
SWEEP_OVERRIDES = {
    "sgd": ["schedule=none"], "cosine": ["schedule=cosine"], "linear": ["schedule=linear"], "step": ["schedule=step"],
    **{f"constant(p={p})": ["schedule=constant", f"schedule.p={p}"] for p in (0.5, 0.25, 0.125, 0.0625)},
    "constant(p=0.25)+reaug": ["dataset=fashion_mnist", "data.augment=true", "schedule=constant", "schedule.p=0.25",
                               "data.augment_on_echo=true"],
    **{f"sgd+{c}": ["launcher=torchrun", "launcher.nproc_per_node=2", "schedule=none", f"comm={c}"]
       for c in ("allreduce", "grad_accum", "periodic")},
    **{f"constant(p=0.5)+{c}": ["launcher=torchrun", "launcher.nproc_per_node=2", "schedule=constant", f"comm={c}"]
       for c in ("on_load", "probabilistic")},
}
SWEEP_OVERRIDES.update({f"{k}+nesterov": [*SWEEP_OVERRIDES[k], "comm.outer_optim=nesterov"]
                        for k in ("sgd+periodic", "constant(p=0.5)+on_load", "constant(p=0.5)+probabilistic")})


@pytest.mark.parametrize("label", sorted(M))
def test_the_labels_are_the_runners(label):
    """The spec's method labels are what the runner writes for the Makefile's configurations: in
    particular re-augmentation on echo (+reaug) and DiLoCo's outer optimizer (+nesterov) are told
    apart from their plain twins, which the figures and the verdict need."""
    from runner import config
    from runner.summary import method_label

    cfg = config.compose(SWEEP_OVERRIDES[label], check=False)
    assert method_label(config.resolved(cfg)) == label


def test_the_speedup_figure_ranks_runs_that_stop_at_the_target_by_loads(tmp_path, monkeypatch):
    """scripts/at_best_lr.py speedup on runs with target.stop: each level's rate is the one with the
    least mean loads to the target, and the speed-up is SGD's loads over the level's, paired by seed."""
    import runpy
    root = tmp_path / "speedup"
    for label, p in (("sgd", None), ("constant(p=0.25)", 0.25)):
        for lr, slow in ((0.05, 1.0), (0.1, 1.5)):
            for seed in range(3):
                d = root / f"{label}-lr{lr}-{seed}"
                monkeypatch.setitem(M, f"{label}@{lr}", dict(M[label], T=[round(t * slow, -2) for t in M[label]["T"]]))
                write(d, f"{label}@{lr}", seed)
                cfg = yaml.safe_load((d / ".hydra" / "config.yaml").read_text())
                cfg["optim"]["lr"], cfg["target"]["stop"] = lr, True
                cfg["schedule"] = {"name": "none"} if p is None else {"name": "constant", "p": p}
                (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
                s = json.loads((d / "summary.json").read_text())
                (d / "summary.json").write_text(json.dumps(dict(s, method=label)))
    script = runpy.run_path(str(ROOT / "scripts" / "at_best_lr.py"), run_name="at_best_lr")
    assert script["main"](["speedup", str(root), "--out", str(tmp_path / "fig")]) == 0
    with open(tmp_path / "fig.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(rows["sgd"]["lr"]) == 0.05 and float(rows["constant(p=0.25)"]["lr"]) == 0.05
    want = math.exp(sum(math.log(a / b) for a, b in zip(M["sgd"]["T"], M["constant(p=0.25)"]["T"])) / 3)
    assert float(rows["constant(p=0.25)"]["speedup"]) == pytest.approx(want, rel=1e-6)
    assert "mean example loads to target" in (tmp_path / "fig.md").read_text()
