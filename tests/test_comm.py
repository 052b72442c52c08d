"""Communication strategies with 2 real processes (gloo on CPU, spawned once for the whole module).

Each rank runs every scenario below and writes what it saw; the tests compare the two ranks with each
other and with references: ``PeriodicModelAverager``, a coin drawn here from the same seed, the steps
that loaded, one process trained on the global batch (``comm=allreduce``, a model without
BatchNorm: per-rank batch statistics would differ from the global batch's), the mean of the ranks'
models (the consensus evaluated between rounds, and the final round), and evaluating the final
checkpoint (the model the last record evaluated).
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from tests.conftest import make_cfg, run_inproc

pytestmark = pytest.mark.slow  # processes and torchrun jobs: not in `make test-fast`

WORLD, STEPS, BUF_B = 2, 12, 8
CONSENSUS_AT = 8  # drive() evaluates the consensus after this step: no round there (periodic: 0, 3, 6, 9)
DDP = {"allreduce", "grad_accum"}  # gradients all-reduced: parameters equal, BatchNorm statistics local
# A model without BatchNorm, in config (hydra instantiate), for the equality with one process.
MLP = ("~model", "+model._target_=torch.nn.Sequential",
       "+model._args_=[{_target_:torch.nn.Flatten},{_target_:torch.nn.Linear,in_features:64,out_features:32},"
       "{_target_:torch.nn.ReLU},{_target_:torch.nn.Linear,in_features:32,out_features:10}]")
DIGITS = ("launcher=torchrun", "data.max_test_examples=64", "eval.every_loads=null", "optim.lr=0.1")
SCENARIOS = {  # name: comm config (steps = STEPS micro-steps, one rank-specific batch each)
    "allreduce": {"name": "allreduce", "_target_": "runner.comm.AllReduce"},
    "grad_accum": {"name": "grad_accum", "_target_": "runner.comm.GradAccum", "k": 4},
    "periodic": {"name": "periodic", "_target_": "runner.comm.Periodic", "period": 3},
    "periodic_warmup": {"name": "periodic", "_target_": "runner.comm.Periodic", "period": 3, "warmup_steps": 2},
    "prob_1": {"name": "probabilistic", "_target_": "runner.comm.Probabilistic",
               "schedule": {"name": "constant", "_target_": "runner.schedules.constant", "p": 1.0}},
    "prob_03": {"name": "probabilistic", "_target_": "runner.comm.Probabilistic",
                "schedule": {"name": "constant", "_target_": "runner.schedules.constant", "p": 0.3}},
    "on_load": {"name": "on_load", "_target_": "runner.comm.OnLoad"},
}


def small_cnn():
    from runner.models import SmallCNN

    return SmallCNN(width=4)


def mlp():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))


def flat(model) -> torch.Tensor:
    from runner.comm import float_buffers

    return torch.cat([t.detach().reshape(-1) for t in list(model.parameters()) + float_buffers(model)])


def flat_params(model) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in model.parameters()])


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The ranks' mean as the averaging computes it (each divided by the world, then summed)."""
    import torch.distributed as dist

    got = [torch.empty_like(t) for _ in range(WORLD)]
    dist.all_gather(got, t)
    return sum(g / WORLD for g in got)


def same_on_all_ranks(t: torch.Tensor) -> bool:
    import torch.distributed as dist

    got = [torch.empty_like(t) for _ in range(WORLD)]
    dist.all_gather(got, t)
    return all(torch.equal(got[0], g) for g in got[1:])


def batch(rank: int, t: int):
    g = torch.Generator().manual_seed(1000 * rank + t)
    return [torch.randn(BUF_B, 1, 8, 8, generator=g), torch.randint(0, 10, (BUF_B,), generator=g)]


def fresh_steps() -> list:
    """Which steps load (the echo coin, shared by the ranks): p = 0.5, step 0 always."""
    g = torch.Generator().manual_seed(5)
    return [t == 0 or torch.rand((), generator=g).item() < 0.5 for t in range(STEPS)]


def drive(comm_cfg: dict, model_fn, ctx, channels_last: bool = False) -> dict:
    """STEPS steps of runner.train.train_step with a strategy; echo steps reuse the last batch; the
    consensus evaluated after step CONSENSUS_AT; the final round at the end."""
    from runner import comm
    from runner.step import grad_scaler, train_step

    torch.manual_seed(0)
    model = model_fn()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    s = comm.build(OmegaConf.create({"checksums": True, **comm_cfg}), model, ctx, seed=0)
    net = s.wrap(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = grad_scaler("off", torch.device("cpu"))
    ddp = comm_cfg["name"] in DDP
    sent, identical, b, consensus = [], [], None, None
    for t, fresh in enumerate(fresh_steps()):
        b = batch(ctx.rank, t) if fresh else b
        train_step(net, opt, scaler, b, s, nullcontext, None)
        traffic = s.after_step(fresh, t / STEPS)
        n = sum(traffic.overlapped) + sum(traffic.sequential)
        assert bool(n) == traffic.round
        sent.append(n)
        if n:
            s.round_checksum()
            identical.append(same_on_all_ranks(flat_params(model) if ddp else flat(model)))
        if t == CONSENSUS_AT:
            own, counts = flat(model).clone(), (s.rounds, s.calls, s.bytes)
            with s.consensus() as m:
                seen = flat(m).clone()
            consensus = {"is_mean": torch.equal(seen, mean_over_ranks(own)), "restored": torch.equal(flat(model), own),
                         "counts_kept": (s.rounds, s.calls, s.bytes) == counts, "eval_bytes": s.eval_bytes}
    trained, before = flat(model).clone(), s.bytes
    final = s.final_round()
    if final:
        s.round_checksum()
    return {"sent": sent, "identical": identical, "report": s.report(), "numel": flat(model).numel(),
            "params": flat_params(model).numel(), "consensus": consensus, "final_round": s.bytes - before,
            "final_is_mean": torch.equal(flat(model), mean_over_ranks(trained)) if final else None,
            "final_identical": same_on_all_ranks(flat(model)),
            "channels_last": [p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters()
                              if p.dim() == 4],
            "trained": trained.tolist() if model_fn is mlp else None}


def reference_periodic(ctx, period: int) -> list:
    """The same training with PeriodicModelAverager as its documentation uses it."""
    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

    from runner.step import loss_fn

    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    avg = PeriodicModelAverager(period=period, warmup_steps=0)
    b = None
    for t, fresh in enumerate(fresh_steps()):
        b = batch(ctx.rank, t) if fresh else b
        loss_fn(model(b[0]), b[1]).backward()
        opt.step()
        avg.average_parameters(model.parameters())
        opt.zero_grad(set_to_none=True)
    return flat(model).tolist()


def _rank_main(rank: int, port: int, out: str, train_cfgs: dict) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import torch.distributed as dist

    from runner import comm, dist as rdist
    from runner.train import run

    ctx = rdist.init("cpu", "gloo")

    def refuse(*a, **k):
        raise AssertionError("a process group was created during training")

    dist.new_group = dist.new_subgroups = refuse  # every round must use the group created by init
    res = {name: drive(c, small_cnn, ctx) for name, c in SCENARIOS.items()}
    res["channels_last"] = {k: drive(SCENARIOS[k], small_cnn, ctx, channels_last=True) for k in ("allreduce", "periodic")}
    res["periodic_mlp"] = {"ours": drive(SCENARIOS["periodic"], mlp, ctx)["trained"],
                           "reference": reference_periodic(ctx, 3)}
    outer = lambda **kw: {**SCENARIOS["periodic"], **kw}
    res["outer"] = {"identity": drive(outer(outer_optim="sgd", outer_lr=1.0, outer_momentum=0.0), mlp, ctx),
                    "nesterov": drive(outer(outer_optim="nesterov", outer_lr=0.7, outer_momentum=0.9), mlp, ctx)}
    s = comm.Local(mlp(), ctx)
    res["agree"] = [s.agree(True), s.agree(ctx.rank == 0), s.sync_rounds, s.reduce_max([float(ctx.rank), -ctx.rank])]
    for name, c in train_cfgs.items():  # the training loop itself, one run directory per config
        run(OmegaConf.create(c), Path(out) / name)
    Path(out, f"rank{rank}.json").write_text(json.dumps(res))
    rdist.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Spawn 2 ranks once; returns (rank0, rank1, out_dir)."""
    out = tmp_path_factory.mktemp("comm")
    train = {
        "on_load": make_cfg("comm=on_load", "schedule=constant", "schedule.p=0.5", "budget.example_loads=384",
                            "data.batch_size=16", "comm.checksums=true", *DIGITS),
        "grad_accum": make_cfg("comm=grad_accum", "comm.k=4", "schedule=none", "budget.steps=18",
                               "data.batch_size=16", "comm.checksums=true", *DIGITS),
        "allreduce_mlp": make_cfg("comm=allreduce", "schedule=none", "budget.example_loads=320",
                                  "data.batch_size=16", *MLP, *DIGITS),
        "adaptive_sim": make_cfg("comm=allreduce", "echo=adaptive", "hardware=ratio", "hardware.ratio=2",
                                 "budget.steps=12", "data.batch_size=16", *DIGITS),
        # records every 3 loads, between rounds; the final round after a step that was none
        "periodic_nesterov": make_cfg("comm=periodic", "comm.period=4", "comm.outer_optim=nesterov", "schedule=none",
                                      "budget.example_loads=320", "data.batch_size=16", "comm.checksums=true",
                                      *DIGITS[:-2], "eval.every_loads=96", "optim.lr=0.1"),
        "on_load_nesterov": make_cfg("comm=on_load", "comm.outer_optim=nesterov", "schedule=constant",
                                     "schedule.p=0.5", "budget.example_loads=320", "data.batch_size=16",
                                     *DIGITS[:-2], "eval.every_loads=96", "optim.lr=0.1"),
        "probabilistic": make_cfg("comm=probabilistic", "comm.schedule.p=0.3", "schedule=constant",
                                  "schedule.p=0.5", "budget.example_loads=320", "data.batch_size=16",
                                  *DIGITS[:-2], "eval.every_loads=96", "optim.lr=0.1"),
    }
    train = {k: OmegaConf.to_container(v, resolve=True) for k, v in train.items()}
    for k in train:
        (out / k).mkdir()
        (out / f"{k}.cfg.json").write_text(json.dumps(train[k]))
    mp.spawn(_rank_main, args=(free_port(), str(out), train), nprocs=WORLD, join=True)
    r = [json.loads((out / f"rank{k}.json").read_text()) for k in range(WORLD)]
    return r[0], r[1], out


def nbytes_per_round(res: dict, name: str) -> int:
    # float32: DDP's rounds carry the gradients; averaging carries parameters and BatchNorm statistics
    return 4 * (res["params"] if name in DDP else res["numel"])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ranks_agree_and_hold_identical_models_after_each_round(ranks, name):
    a, b, _ = ranks
    assert a[name]["report"]["decision_hash"] == b[name]["report"]["decision_hash"]
    assert a[name]["sent"] == b[name]["sent"]
    assert a[name]["identical"] and all(a[name]["identical"]) and all(b[name]["identical"])
    assert a[name]["report"]["param_checksum"] == b[name]["report"]["param_checksum"]
    # every round carries the whole model (under DDP its gradients), counted at the call; no other
    # collective goes with a step (DDP's BatchNorm statistics wait for the records and the end)
    rounds = sum(1 for n in a[name]["sent"] if n)
    assert all(n in (0, nbytes_per_round(a[name], name)) for n in a[name]["sent"])
    # the final round: the BatchNorm statistics under DDP; the whole model after a step without a round
    buffers = 4 * (a[name]["numel"] - a[name]["params"])
    last_was_round = a[name]["sent"][-1] > 0
    final = buffers if name in DDP else 0 if last_was_round else 4 * a[name]["numel"]
    assert a[name]["final_round"] == b[name]["final_round"] == final
    assert a[name]["report"]["comm_rounds"] == rounds + (final > 0)
    assert a[name]["report"]["comm_bytes"] == rounds * nbytes_per_round(a[name], name) + final
    # every rank ends with the same model, parameters and BatchNorm statistics
    assert a[name]["final_identical"] and b[name]["final_identical"]
    assert a[name]["report"]["final_checksum"] == b[name]["report"]["final_checksum"]
    if final:
        assert a[name]["final_is_mean"] and a[name]["report"]["last_round_step"] == STEPS


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_consensus_evaluates_the_ranks_average_and_leaves_training_alone(ranks, name):
    """After step CONSENSUS_AT the model evaluated is the mean of the ranks' models; each rank's own
    model is back bit for bit afterwards, and the average is counted apart from training's traffic."""
    a, b, _ = ranks
    for r in (a, b):
        c = r[name]["consensus"]
        assert c["is_mean"] and c["restored"] and c["counts_kept"]
    # what differed between the ranks was averaged: under DDP the BatchNorm statistics; with model
    # averaging the whole model, unless that step was a round (then nothing)
    if name in DDP:
        expect = 4 * (a[name]["numel"] - a[name]["params"])
    else:
        expect = 0 if a[name]["sent"][CONSENSUS_AT] else 4 * a[name]["numel"]
    assert a[name]["consensus"]["eval_bytes"] == a[name]["report"]["eval_comm_bytes"] == expect
    if name in ("periodic", "on_load"):
        assert expect > 0  # the case that matters: the ranks' models differed


@pytest.mark.parametrize("name", ["allreduce", "periodic"])
def test_channels_last_survives_averaging(ranks, name):
    a, _, _ = ranks
    res = a["channels_last"][name]
    assert res["channels_last"] and all(res["channels_last"])
    assert res["report"]["comm_rounds"] > 1 and res["consensus"]["restored"]


def rounds_at(res: dict) -> list:
    return [t for t, n in enumerate(res["sent"]) if n]


def test_allreduce_every_step_grad_accum_once_per_k(ranks):
    a, _, _ = ranks
    assert rounds_at(a["allreduce"]) == list(range(STEPS))
    assert rounds_at(a["grad_accum"]) == [3, 7, 11]  # k = 4 micro-steps, one all-reduce
    # DDP's hook: one bucket of gradients a round, as plain DDP; the BatchNorm statistics once, at the end
    assert a["allreduce"]["report"]["comm_calls"] == STEPS + 1
    assert a["grad_accum"]["report"]["comm_calls"] == 3 + 1


def test_periodic_follows_periodic_model_averager(ranks):
    a, b, _ = ranks
    assert rounds_at(a["periodic"]) == [0, 3, 6, 9]  # PeriodicModelAverager(period=3): step % 3 == 0
    assert rounds_at(a["periodic_warmup"]) == [0, 1, 2, 5, 8, 11]  # every step before warmup_steps=2
    for r in (a, b):
        ours, ref = torch.tensor(r["periodic_mlp"]["ours"]), torch.tensor(r["periodic_mlp"]["reference"])
        assert ours.numel() == ref.numel() > 0 and torch.equal(ours, ref)


def test_probabilistic_uses_its_own_shared_coin(ranks):
    from runner.comm import comm_seed

    a, _, _ = ranks
    assert rounds_at(a["prob_1"]) == list(range(STEPS))
    g = torch.Generator().manual_seed(comm_seed(0))
    expect = [t for t in range(STEPS) if torch.rand((), generator=g).item() < 0.3]
    assert rounds_at(a["prob_03"]) == expect and 0 < len(expect) < STEPS


def test_on_load_averages_exactly_on_load_steps(ranks):
    a, _, _ = ranks
    assert rounds_at(a["on_load"]) == [t for t, f in enumerate(fresh_steps()) if f]


def test_agree_and_reduce_max(ranks):
    a, b, _ = ranks
    assert a["agree"][:3] == b["agree"][:3] == [True, False, 2]  # two one-number rounds, counted apart
    assert a["agree"][3] == b["agree"][3] == [1.0, 0.0]


def read_dir(out: Path, name: str):
    recs = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]
    r = [json.loads((out / name / f"rank{k}.json").read_text()) for k in range(WORLD)]
    return recs, r


def test_training_loop_on_load(ranks):
    _, _, out = ranks
    recs, r = read_dir(out, "on_load")
    last = recs[-1]
    loads = last["step"] - last["echo_steps"]
    # a round on every load, and the final round when the last step was an echo
    final = r[0]["last_round_step"] == last["step"]
    assert last["echo_steps"] > 0 and last["comm_rounds"] == loads + final == r[0]["comm_rounds"]
    assert last["example_loads"] == WORLD * 16 * loads  # both ranks' examples
    assert r[0]["decision_hash"] == r[1]["decision_hash"]
    assert r[0]["param_checksum"] == r[1]["param_checksum"] is not None
    assert r[0]["final_checksum"] == r[1]["final_checksum"]
    assert (out / "on_load" / "summary.json").exists()


def test_training_loop_grad_accum(ranks):
    _, _, out = ranks
    recs, r = read_dir(out, "grad_accum")
    # 4 all-reduces of gradients, then the BatchNorm statistics averaged once at the end
    assert recs[-1]["step"] == 18 and recs[-1]["comm_rounds"] == 18 // 4 + 1 == r[0]["comm_rounds"]
    assert r[0]["param_checksum"] == r[1]["param_checksum"] and r[0]["last_round_step"] == 18
    assert r[0]["final_checksum"] == r[1]["final_checksum"]


def evaluate_checkpoint(run_dir: Path, cfg: dict) -> dict:
    """The test metrics of rank 0's checkpointed model, evaluated here."""
    from runner import data, models, pipeline
    from runner.step import evaluate

    cfg = OmegaConf.create(cfg)
    splits = data.build(cfg.data)
    model = models.build(cfg.model, splits.info)
    model.load_state_dict(torch.load(run_dir / "checkpoint" / "rank0.pt", weights_only=True)["model"])
    return evaluate(model, pipeline.eval_batches(splits.test, cfg.eval.batch_size), splits.task, nullcontext).metrics


@pytest.mark.parametrize("name", ["on_load", "on_load_nesterov", "periodic_nesterov", "probabilistic"])
def test_local_strategies_record_the_consensus_and_end_with_one_model(ranks, name):
    """Records between rounds evaluate the ranks' average, counted apart (eval_comm_bytes); the run
    ends with a final round, so both ranks hold the same model, the one the last record evaluated."""
    _, _, out = ranks
    recs, r = read_dir(out, name)
    model_bytes = r[0]["comm_bytes"] // r[0]["comm_rounds"]  # every round carries the whole model
    assert r[0]["comm_bytes"] == r[0]["comm_rounds"] * model_bytes
    assert r[0]["final_checksum"] == r[1]["final_checksum"]
    # the final round, counted at the end (step 10: periodic's last round was at step 8), unless the
    # last step was a round (then that step, the last: on_load's here)
    final = {"periodic_nesterov": True, "on_load": False}.get(name, r[0]["last_round_step"] == recs[-1]["step"])
    assert r[0]["last_round_step"] == recs[-1]["step"] - (not final)
    assert recs[-1]["comm_rounds"] == r[0]["comm_rounds"] and recs[-1]["comm_bytes"] == r[0]["comm_bytes"]
    if name.startswith("on_load"):  # records are due after a step that loaded, hence averaged: no consensus needed
        assert recs[-1]["eval_comm_bytes"] == 0
    else:
        assert recs[-1]["eval_comm_bytes"] > 0 and recs[-1]["eval_comm_bytes"] % model_bytes == 0
    assert recs[-1]["eval_comm_bytes"] == r[0]["eval_comm_bytes"] == r[1]["eval_comm_bytes"]
    cfg = json.loads((out / f"{name}.cfg.json").read_text())
    got = evaluate_checkpoint(out / name, cfg)
    assert got["test_loss"] == pytest.approx(recs[-1]["test_loss"], rel=1e-6)


def test_allreduce_two_ranks_equals_one_process_with_the_global_batch(ranks, tmp_path):
    _, _, out = ranks
    recs, r = read_dir(out, "allreduce_mlp")
    one, _ = run_inproc(tmp_path, "comm=none", "schedule=none", "budget.example_loads=320", "data.batch_size=32",
                        *MLP, *DIGITS[1:])
    assert recs[-1]["step"] == one[-1]["step"] == 10 and recs[-1]["example_loads"] == 320
    dp = torch.load(out / "allreduce_mlp" / "checkpoint" / "rank0.pt", weights_only=True)["model"]
    single = torch.load(tmp_path / "checkpoint" / "rank0.pt", weights_only=True)["model"]
    for k in single:
        rel = (dp[k] - single[k]).norm() / single[k].norm()
        assert rel < 1e-5, (k, rel.item())
    assert abs(recs[-1]["test_loss"] - one[-1]["test_loss"]) < 1e-4


def test_an_outer_optimizer_on_the_pseudo_gradient(ranks):
    """DiLoCo's outer step: with lr 1 and no momentum it is plain averaging; Nesterov's outer step
    keeps the ranks identical after every round and moves the model elsewhere."""
    a, b, _ = ranks
    plain = torch.tensor(a["periodic_mlp"]["ours"])
    identity, nesterov = (torch.tensor(a["outer"][k]["trained"]) for k in ("identity", "nesterov"))
    assert torch.allclose(identity, plain, rtol=0, atol=1e-6)
    assert all(a["outer"]["nesterov"]["identical"]) and all(b["outer"]["nesterov"]["identical"])
    assert rounds_at(a["outer"]["nesterov"]) == rounds_at(a["periodic"])
    assert (nesterov - plain).abs().max() > 1e-3


def test_adaptive_echoing_on_the_simulated_clock_needs_no_agreement_round(ranks):
    """Readiness from the simulated clock is the same on every rank: no all-reduce to agree."""
    _, _, out = ranks
    recs, r = read_dir(out, "adaptive_sim")
    assert recs[-1]["step"] == 12 and recs[-1]["echo_steps"] > 0
    assert r[0]["sync_rounds"] == r[1]["sync_rounds"] == recs[-1]["sync_rounds"] == 0
    assert r[0]["decision_hash"] == r[1]["decision_hash"]
