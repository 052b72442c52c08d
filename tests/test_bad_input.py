"""Bad input costs seconds: every refusal exits 2 with one sentence that says what and how to fix,
no traceback, and leaves an existing run directory byte for byte as it was.

Three layers, cheapest first: every range of ``schema.validate`` on one composed config (a table of
value cases, milliseconds each); the CLI in this process for each kind of refusal (Hydra's
composition, the schema, the file system, the run directory); and a few real ``echo-run``
processes for the exit status a shell sees. Last, the other side of the line: an error raised by the
user's own code is not bad input, and keeps its type and traceback (exit 1).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from runner.schema import ConfigError, validate
from tests.conftest import ECHO_RUN, ROOT, cli, cli_inproc, make_cfg, run_inproc

TINY = ("budget.example_loads=64", "eval.every_loads=null", "model.width=4", "data.max_test_examples=32")

# (overrides applied to a composed config, text the message must contain, the options composed
# first). Every range and choice that validate() checks, at or just past its edge.
PY, CONST, STEP, ACC, PERIODIC = ("dataset=python_docs",), ("schedule=constant",), ("schedule=step",), \
    ("comm=grad_accum",), ("launcher=torchrun", "comm=periodic")
VALUES = [
    ({"data.batch_size": 0}, "data.batch_size=0", ()),
    ({"data.batch_size": "many"}, "data.batch_size", ()),
    ({"data.workers": -1}, "data.workers=-1", ()),
    ({"data.test_fraction": 1.0}, "data.test_fraction=1.0", ()),
    ({"data.block_size": -4}, "data.block_size=-4", PY),
    ({"data.vocab_size": 100}, "data.vocab_size=100", PY),
    ({"data.max_train_examples": 0}, "data.max_train_examples=0", ()),
    ({"data.root": "/tmp"}, "does not apply to data runner.data.digits", ()),
    ({"data._target_": "runner.data.no_such_set"}, "data._target_='runner.data.no_such_set' cannot be imported", ()),
    ({"schedule.p": 0.0}, "schedule.p=0.0", CONST),
    ({"schedule.p": 1.5}, "schedule.p=1.5", CONST),
    ({"schedule.p": "half"}, "schedule.p='half'", CONST),
    ({"schedule.p_max": 0.5, "schedule.p_min": 0.9}, "schedule.p_min=0.9", ()),
    ({"schedule.p_min": -0.1}, "schedule.p_min=-0.1", ()),
    ({"schedule.gamma": 2.0}, "schedule.gamma=2.0", STEP),
    ({"schedule.milestones": [0.75, 0.5]}, "schedule.milestones", STEP),
    ({"schedule.p": 0.5}, "schedule.p is not an option of schedule runner.schedules.cosine", ()),
    ({"echo.policy": "sometimes"}, "echo.policy='sometimes'", ()),
    ({"echo.factor": 0.5}, "echo.factor=0.5", ()),
    ({"echo.buffer": 0}, "echo.buffer=0", ()),
    ({"echo.policy": "adaptive"}, "echo=adaptive needs", ()),
    ({"echo.policy": "example", "data.augment_on_echo": True}, "data.augment_on_echo=true does not apply", ()),
    ({"optim.lr": 0.0}, "optim.lr=0.0", ()),
    ({"optim.lr": float("nan")}, "optim.lr=nan", ()),
    ({"optim.momentum": 1.0}, "optim.momentum=1.0", ()),
    ({"optim.weight_decay": -0.1}, "optim.weight_decay=-0.1", ()),
    ({"optim.betas": [0.9, 1.0]}, "optim.betas", ("optim=adamw",)),
    ({"optim.lr_schedule": "exp"}, "optim.lr_schedule='exp'", ()),
    ({"optim.warmup": 1.0}, "optim.warmup=1.0", ()),
    ({"optim.lr_min_ratio": 2.0}, "optim.lr_min_ratio=2.0", ()),
    ({"optim.grad_clip": 0.0}, "optim.grad_clip=0.0", ()),
    ({"optim.dampening": 0.1}, "optim.dampening is not an option of optim torch.optim.AdamW", ("optim=adamw",)),
    ({"budget.example_loads": None}, "budget='null'", ()),
    ({"budget.example_loads": -5}, "budget.example_loads=-5", ()),
    ({"budget.steps": 0}, "budget.steps=0", ()),
    ({"budget.sim_s": 10.0}, "budget.sim_s=10.0", ()),  # no hardware profile to simulate it
    ({"eval.every_loads": 0}, "eval.every_loads=0", ()),
    ({"eval.batch_size": 0}, "eval.batch_size=0", ()),
    ({"target.mode": "up"}, "target.mode='up'", ()),
    ({"pipeline.examples_per_s": 0.0}, "pipeline.examples_per_s=0.0", ()),
    ({"pipeline.prefetch": 0}, "pipeline.prefetch=0", ()),
    ({"comm._target_": "runner.comm.Gossip"}, "comm._target_='runner.comm.Gossip' cannot be imported", ()),
    ({"comm.k": 0}, "comm.k=0", ACC),
    ({"comm.period": 0}, "comm.period=0", PERIODIC),
    ({"comm.warmup_steps": -1}, "comm.warmup_steps=-1", PERIODIC),
    ({"comm.outer_momentum": 1.0}, "comm.outer_momentum=1.0", PERIODIC),
    ({"comm.k": 2}, "comm.k is not an option of comm runner.comm.Local", ()),
    ({"comm.schedule.p": 2.0}, "comm.schedule.p=2.0", ()),
    ({"launcher.name": "slurm"}, "launcher.name='slurm'", ()),
    ({"launcher.nproc_per_node": 0}, "launcher.nproc_per_node=0", ()),
    ({"launcher.max_restarts": -1}, "launcher.max_restarts=-1", ()),
    ({"launcher.backend": "mpi"}, "launcher.backend='mpi'", ()),
    ({"launcher.name": "torchrun", "launcher.nproc_per_node": 2}, "comm=none trains one process", ()),
    ({"launcher.nproc_per_node": 1}, "the torchrun job has one rank", PERIODIC),
    ({"logger.name": "tensorboard"}, "logger.name='tensorboard'", ()),
    ({"logger.mode": "cloud"}, "logger.mode='cloud'", ()),
    ({"train.amp": "fp8"}, "train.amp='fp8'", ()),
    ({"train.device": "tpu"}, "train.device='tpu'", ()),
    ({"train.threads": 0}, "train.threads=0", ()),
    ({"train.check_every": 0}, "train.check_every=0", ()),
    ({"checkpoint.every_loads": 0}, "checkpoint.every_loads=0", ()),
    ({"resume": "sometimes"}, "resume='sometimes'", ()),
    ({"hardware.step_s": 0.0}, "hardware.step_s=0.0", ("hardware=gpu_nvme",)),
    ({"hardware.load_s_per_example": -1.0}, "hardware.load_s_per_example=-1.0", ("hardware=gpu_nvme",)),
    ({"hardware.workers": 0}, "hardware.workers=0", ("hardware=gpu_nvme",)),
    ({"hardware.prefetch": 0}, "hardware.prefetch=0", ("hardware=gpu_nvme",)),
    ({"hardware.comm_latency_s": -1.0}, "hardware.comm_latency_s=-1.0", ("hardware=gpu_nvme",)),
    ({"hardware.comm_bandwidth_Bps": 0.0}, "hardware.comm_bandwidth_Bps=0.0", ("hardware=gpu_nvme",)),
]
_BASES: dict = {}


def composed(base: tuple):
    if base not in _BASES:
        _BASES[base] = OmegaConf.to_container(make_cfg(*base))
    return OmegaConf.create(_BASES[base])


@pytest.mark.parametrize("values, says, base", VALUES, ids=[",".join(v[0]) for v in VALUES])
def test_every_range_and_choice_is_refused(values, says, base):
    cfg = composed(base)
    with open_dict(cfg):
        for k, v in values.items():
            OmegaConf.update(cfg, k, v, merge=False)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    msg = str(e.value)
    assert says in msg and "\n" not in msg and msg.endswith(".")


def test_the_defaults_and_every_edge_inside_the_ranges_pass():
    ok = {"schedule.p_min": 1.0, "optim.momentum": 0.0, "optim.warmup": 0.0, "optim.lr_min_ratio": 1.0,
          "echo.factor": 1.0, "launcher.max_restarts": 0, "data.workers": 0}
    cfg = composed(())
    for k, v in ok.items():
        OmegaConf.update(cfg, k, v)
    validate(cfg)
    cfg = composed(PERIODIC)
    OmegaConf.update(cfg, "comm.warmup_steps", 0)
    validate(cfg)
    validate(composed(("hardware=gpu_nvme",)))


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    """A complete run directory that no refused command may touch."""
    run = tmp_path_factory.mktemp("existing") / "run"
    run_inproc(run, *TINY)
    assert (run / "summary.json").exists()
    return run


def snapshot(d: Path) -> dict:
    return {p.relative_to(d): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


# (arguments, text stderr must contain, where: "existing" run dir, a "new" one, or given in the args)
KINDS = [
    (["optim.lrr=0.1"], "Could not override 'optim.lrr'", "existing"),  # a typo (Hydra)
    (["+optim.lrr=0.1"], "optim.lrr is not an option", "existing"),  # a typo forced in (schema)
    (["+model.widht=8"], "model.widht is not an option of model", "existing"),  # the model's arguments
    (["optim.lr=abc"], "could not be converted to Float", "existing"),  # wrong type
    (["schedule=bogus"], "Could not find 'schedule/bogus'", "existing"),  # no such option
    (["echo.policy=sometimes"], "echo.policy='sometimes'", "existing"),  # bad choice
    (["optim.lr=-1"], "optim.lr=-1.0 is not valid", "existing"),  # a range
    (["budget.example_loads=null"], "give budget.example_loads", "existing"),
    (["dataset=cifar10", "model=cnn", "data.root={tmp}/missing", "data.download=false"],
     "does not exist and data.download=false", "new"),
    (["dataset=cifar10", "model=cnn", "data.root={tmp}/a_file"], "is a file, not a directory", "new"),
    (["dataset=cifar10", "model=cnn", "data.root={tmp}/a_file/sub"], "cannot be created", "new"),
    (["hydra.run.dir={tmp}/a_file/run"], "cannot write the run directory", "args"),  # unwritable output
    (["optim.lr=0.2"], "holds a run of another configuration", "existing"),  # another run's directory
    (["resume=never"], "resume=never", "existing"),
    (["hydra.run.dir={tmp}/not_a_run"], "not an echo-run run", "args"),  # a directory of other files
]


@pytest.mark.parametrize("args, says, where", KINDS, ids=[" ".join(k[0]) for k in KINDS])
def test_each_kind_of_refusal_exits_2_and_touches_nothing(existing, tmp_path, args, says, where):
    (tmp_path / "a_file").write_text("data\n")
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "not_a_run" / "notes.txt").write_text("mine\n")
    args = [a.format(tmp=tmp_path) for a in args]
    if where != "args":
        args.append(f"hydra.run.dir={existing if where == 'existing' else tmp_path / 'new'}")
    before, around = snapshot(existing), snapshot(tmp_path)
    code, err = cli_inproc(*TINY, *args)
    assert code == 2, err
    assert says in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("echo-run: error: ") and last.endswith(".")  # one closing sentence to act on
    assert snapshot(existing) == before and snapshot(tmp_path) == around  # nothing written, nothing created


@pytest.mark.slow
def test_a_shell_sees_status_2_for_a_refused_run_and_a_refused_sweep(existing, tmp_path):
    before = snapshot(existing)
    p = cli(*TINY, f"hydra.run.dir={existing}", "optim.lr=0.2")  # another configuration's directory
    assert p.returncode == 2 and "another configuration" in p.stderr and "Traceback" not in p.stderr
    # A sweep whose every job is refused: each job says why, the others are still tried, status 2.
    p = subprocess.run([*ECHO_RUN, "-m", *TINY, f"hydra.sweep.dir={tmp_path}/sweep", "optim.lr=-1,-2"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "job 0: optim.lr=-1.0 is not valid" in p.stderr and "job 1: optim.lr=-2.0 is not valid" in p.stderr
    assert snapshot(existing) == before


def test_a_target_the_task_does_not_record_is_refused_and_leaves_nothing(tmp_path):
    code, err = cli_inproc("dataset=python_docs", "target.metric=test_acc", "budget.example_loads=64",
                           f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and "target.metric=test_acc is not recorded for a language data set" in err
    assert not (tmp_path / "run").exists()


def test_hardware_measured_before_any_measurement_says_how_to_measure(tmp_path, monkeypatch):
    from runner.advise import profile

    monkeypatch.setattr(profile, "CONF_DIR", str(tmp_path / "conf"))  # a checkout that has measured nothing
    code, err = cli_inproc("hardware=measured", "budget.steps=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and "echo-advise measure" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_an_image_model_on_a_language_data_set_is_refused_at_start_up(tmp_path):
    code, err = cli_inproc("dataset=python_docs", "model=cnn", "budget.example_loads=64",
                           f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and "does not fit the data set 'python_docs'" in err and "model=tiny_gpt2" in err, err[-2000:]
    assert "Traceback" not in err and not (tmp_path / "run").exists()


# A user's own model module (model._target_=<module>.Net): an error in its code keeps its type and a
# traceback into the user's file (exit 1); only a path that names nothing is bad input (exit 2).
USER_CODE = {
    "raises_at_import": ("import torch\nSCALE = 1 / 0\n", "ZeroDivisionError: division by zero", "SCALE = 1 / 0"),
    "imports_a_missing_module": ("import no_such_dependency_of_mine\n",
                                 "ModuleNotFoundError: No module named 'no_such_dependency_of_mine'",
                                 "import no_such_dependency_of_mine"),
    "raises_in_init": ("from runner.models import SmallCNN\n\nclass Net(SmallCNN):\n    def __init__(self, **kw):\n"
                       "        super().__init__(**kw)\n        raise KeyError('my_layer')\n",
                       "KeyError: 'my_layer'", "raise KeyError('my_layer')"),
}


@pytest.mark.parametrize("name", sorted(USER_CODE))
def test_an_error_in_the_users_own_module_keeps_its_type_and_traceback(tmp_path, monkeypatch, name):
    code_text, error, line = USER_CODE[name]
    module = f"user_net_{name}"
    (tmp_path / f"{module}.py").write_text(code_text)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, err = cli_inproc(*TINY, f"model._target_={module}.Net", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 1, err
    assert "Traceback" in err and error in err, err
    assert f"{module}.py" in err and line in err  # the traceback reaches the user's own line
    assert "cannot be imported" not in err


@pytest.mark.parametrize("target, says", [("user_nett.Net", "no module named 'user_nett'"),
                                          ("user_net.Nett", "'user_net' has no attribute 'Nett'")])
def test_a_target_path_that_names_nothing_is_bad_input(tmp_path, monkeypatch, target, says):
    (tmp_path / "user_net.py").write_text("from runner.models import SmallCNN as Net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, err = cli_inproc(*TINY, f"model._target_={target}", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and f"model._target_='{target}' cannot be imported ({says})" in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
