# echo-run: `make run` and `make test` create .venv and install the project on first use.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
SCALE ?= small

.PHONY: help install run test test-fast docs

help:  ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*?## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort | awk -F'\t' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	# torch and torchvision first, pinned to the pair this machine holds; other machines may use any
	# pair pyproject.toml admits.
	.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" || .venv/bin/pip install -q torch torchvision
	.venv/bin/pip install -q -e ".[dev]"
	touch $(VENV_STAMP)

install: $(VENV_STAMP)  ## create .venv and install echo-run with its test tools

run: $(VENV_STAMP)  ## the embedded default: digits, small CNN, cosine echoing
	.venv/bin/echo-run $(ARGS)

test: $(VENV_STAMP)  ## the whole test suite (unit, CLI end to end, torchrun with 2 processes)
	.venv/bin/lint-imports  # the layers of docs/architecture.md ([tool.importlinter] in pyproject.toml)
	# Two processes at a time (pytest-xdist), then the tests that time this machine, alone.
	.venv/bin/pytest -q -p no:cacheprovider -n 2 -m "not serial" $(PYTEST_ARGS)
	.venv/bin/pytest -q -p no:cacheprovider -m serial $(PYTEST_ARGS)
	$(MKDOCS)

test-fast: $(VENV_STAMP)  ## the tests in this process only (no torchrun, sweeps or subprocesses): a couple of minutes
	.venv/bin/pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

# The docs site (mkdocs.yml, docs/): --strict fails on a broken link, anchor or reference; the CLI page
# runs the three commands' --help (docs/hooks.py).
MKDOCS := NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q
docs: $(VENV_STAMP)  ## build the docs site into site/ (open site/index.html; or .venv/bin/mkdocs serve)
	$(MKDOCS)

# ---- figures: `make figures` runs what is missing (a finished run is never re-run) and redraws ----
# One figure per question (docs/results.md), each method at its own best learning rate from a grid
# of 5-6 rates x2 apart, chosen on the tuning seed by successive halving and measured on 3 other
# seeds (FIG_TUNE_SEEDS, FIG_MEASURE_SEEDS; the verdict table's rule):
#   1. the tuning seed runs every rate to a quarter of the budget (budget.stop_at; runs that stop at
#      their target run to it, or to the cap);
#   2. the best FIG_SH_KEEP rates there (mean metric at equal loads; loads to the target) continue to
#      the end, where they stopped;
#   3. the better of those at the end runs on the measuring seeds.
# One tuning seed and 2 rates to the end: 5.75 runs' worth per method for 5 rates, where 2 tuning
# seeds would cost 7.75 (make bench-sweep) and the set would pass two hours on this machine.
# scripts/halving.py reads the records and prints each next stage's rates; a stage already run is
# not run again, so an interrupted `make figures` continues from the records it finds (committed
# ones included: results/README.md).
#   SCALE=small (default): Fashion-MNIST (offline from /usr/share/datasets/fashion-mnist), SmallCNN
#     width 8, on this machine's CPUs: results/small/ (the records, committed) and results/figures/.
#     make bench-sweep estimates its cost; results/bench/sweep.json.
#   SCALE=tiny: the same figures on the embedded digits (schedules: a 4,096-image slice of
#     Fashion-MNIST), 2 rates, for a quick look, results/tiny/figures/.
#   SCALE=paper: CIFAR-10 / ResNet-18 (MobileNetV3 on CIFAR-10, GPT-2 on WikiText-2) at 30 epochs,
#     on a GPU machine with the data: results/figures/paper/.
# The venv is an order-only prerequisite: an edited pyproject.toml does not reinstall in the middle
# of an hour of runs (make install does).
# Runs go to results/$(SCALE)/<figure>/<swept overrides>/; after changing a figure's fixed settings
# below, delete results/$(SCALE)/<figure>/ (echo-run refuses a directory that holds another config).
.PHONY: figures verdict fig-speedup fig-schedules fig-augment fig-dp fig-modern fig-advisor fig-paper
FIG_TUNE_SEEDS := 0
FIG_MEASURE_SEEDS := 1,2,3
FIG_SH_SEED := 0
FIG_SH_STOP := 0.25
FIG_SH_KEEP := 2
ifeq ($(SCALE),paper)
FIG_RUNS := results/paper
FIG_OUT := results/figures/paper
FIG_THREADS :=
FIG_DATA := dataset=cifar10 model=resnet18 target.value=0.85
FIG_HW := hardware=gpu_network_storage
FIG_LOW_TARGET := 0.8
FIG_SPEEDUP_SET := optim.lr_schedule=constant target.stop=true budget.example_loads=1500000 budget.steps=200000 eval.every_loads=10000
FIG_LRS_1 := 0.025,0.05,0.1,0.2,0.4
FIG_LRS_4 := 0.0125,0.025,0.05,0.1,0.2
FIG_SCHED_DATA := $(FIG_DATA) $(FIG_HW) data.augment=true
FIG_SCHED_SET := budget.example_loads=1500000 eval.every_loads=50000
FIG_LRS := 0.025,0.05,0.1,0.2,0.4
FIG_DP_COMMON := launcher=torchrun launcher.nproc_per_node=4 data.batch_size=128 hardware=cluster_ethernet
FIG_DP_SET := $(FIG_DP_COMMON) budget.example_loads=1500000 eval.every_loads=50000
FIG_DP_LRS := 0.025,0.05,0.1,0.2,0.4
FIG_DP_STEPS := 2930
FIG_DP_STEPS_EVAL := eval.every_loads=500000
FIG_GA_LRS := 0.1,0.2,0.4,0.8,1.6
FIG_OUTER := comm.outer_lr=0.4,0.7,1.0 comm.outer_momentum=0.8,0.9
FIG_MOB_SET := dataset=cifar10 model=mobilenet_v3_small hardware=gpu_network_storage target.value=0.8 budget.example_loads=1500000 eval.every_loads=50000
FIG_MOB_LRS := 0.025,0.05,0.1,0.2,0.4
FIG_MOB_Q := MobileNetV3-Small, 30 epochs
FIG_LM_SET := dataset=wikitext2 model=gpt2 model.size=small model.pretrained=true data.batch_size=16 optim=adamw hardware=gpu_network_storage target.value=30 budget.example_loads=27900 eval.every_loads=3100
FIG_LM_LRS := 1e-5,2e-5,5e-5,1e-4,2e-4
FIG_YLIM :=
FIG_PRESETS := fig3_schedules fig4_cifar10_lr fig5_cifar100_lr fig6_data_parallel fig7_gpt2_wikitext2 mobilenet_v3
else ifeq ($(SCALE),tiny)
FIG_RUNS := results/tiny
FIG_OUT := results/tiny/figures
FIG_THREADS := train.threads=1
FIG_DATA := dataset=digits
FIG_HW := hardware=ratio hardware.ratio=4
FIG_LOW_TARGET := 0.8
FIG_SPEEDUP_SET := optim.lr_schedule=constant target.stop=true budget.example_loads=2874 budget.steps=600 eval.every_loads=96
FIG_LRS_1 := 0.05,0.1
FIG_LRS_4 := 0.025,0.05
FIG_SCHED_DATA := dataset=fashion_mnist model.width=8 data.max_train_examples=4096 data.max_test_examples=500 target.value=0.7 $(FIG_HW) data.augment=true
FIG_SCHED_SET := budget.example_loads=2048 eval.every_loads=512
FIG_LRS := 0.05,0.1
FIG_DP_COMMON := launcher=torchrun launcher.nproc_per_node=2 data.batch_size=16 $(FIG_HW) hardware.comm_latency_s=0.005 hardware.comm_bandwidth_Bps=1e8
FIG_DP_SET := $(FIG_DP_COMMON) budget.example_loads=1437 eval.every_loads=479
FIG_DP_LRS := 0.05,0.2
FIG_DP_STEPS := 45
FIG_DP_STEPS_EVAL := eval.every_loads=1440
FIG_GA_LRS := 0.05,0.2
FIG_OUTER := comm.outer_lr=0.7 comm.outer_momentum=0.9
FIG_MOB_SET := dataset=digits model=mobilenet_v3_small $(FIG_HW) budget.example_loads=480 eval.every_loads=160
FIG_MOB_LRS := 0.05
FIG_MOB_Q := Early training
FIG_LM_SET := dataset=python_docs optim=adamw data.max_test_examples=128 $(FIG_HW) budget.example_loads=800 eval.every_loads=400
FIG_LM_LRS := 0.003
FIG_YLIM := --ylim 0.5 1.0
FIG_PRESETS := fig3_schedules_smoke fig4_cifar10_lr_smoke fig5_cifar100_lr_smoke fig6_data_parallel_smoke fig7_gpt2_wikitext2_smoke mobilenet_v3_smoke
else
FIG_RUNS := results/small
FIG_OUT := results/figures
# The workload: Fashion-MNIST, SmallCNN at width 8, evaluated during training on a fixed random 1,000
# of the test images (eval.subset; one standard error 0.010 near 0.88) and on all 10,000 at the end,
# on a simulated accelerator whose loader needs 4 step-times per batch (sim_s).
FIG_THREADS := train.threads=1
FIG_DATA := dataset=fashion_mnist model.width=8 eval.subset=1000 eval.batch_size=1000
FIG_HW := hardware=ratio hardware.ratio=4
# Time to target: each run stops at 0.87 test accuracy and is drawn to 0.80 as well, capped at 3
# epochs of loads, with the cosine learning rate over the cap (the same rate at the same loads for
# every level). At a constant rate SGD's accuracy levels off near 0.87-0.88 on this model (pilot:
# seeds crossed 0.87 at anywhere from 2.3 to 4 epochs, or not at all), so a time to 0.87 would
# measure the evaluation's noise. 1/p = 1, 2, 4: the levels a loader at R = 4 pays for.
FIG_LOW_TARGET := 0.8
FIG_SPEEDUP_SET := optim.lr_schedule=cosine target.value=0.87 target.stop=true budget.example_loads=180000 eval.every_loads=2560
FIG_LRS_1 := 0.0125,0.025,0.05,0.1,0.2,0.4
FIG_LRS_4 := 0.00625,0.0125,0.025,0.05,0.1,0.2
# Equal loads: 3 epochs (180,000 loads) with the cosine learning rate over them, random crops and
# flips (Fashion-MNIST 28x28, 4-pixel padding), evaluated 16 times.
FIG_SCHED_DATA := $(FIG_DATA) $(FIG_HW) data.augment=true
FIG_SCHED_SET := budget.example_loads=180000 eval.every_loads=11250
FIG_LRS := 0.0125,0.025,0.05,0.1,0.2,0.4
# SGD and constant p = 1/2 ran at 6 rates; 0.4 came last at the quarter for both, so the other
# schedules and the re-augmented echoing start from 5.
FIG_LRS_5 := 0.0125,0.025,0.05,0.1,0.2
# Two gloo ranks of 32 (64 per step, as one process); a round costs 5 ms + 140 KB at 100 MB/s, about
# a quarter of a step; periodic averaging and DiLoCo every 8 steps.
FIG_DP_COMMON := launcher=torchrun launcher.nproc_per_node=2 data.batch_size=32 $(FIG_HW) hardware.comm_latency_s=0.005 hardware.comm_bandwidth_Bps=1e8
FIG_DP_SET := $(FIG_DP_COMMON) budget.example_loads=180000 eval.every_loads=11250
FIG_DP_LRS := 0.0125,0.025,0.05,0.1,0.2
# Reviewer 1's equal optimizer steps: all-reduce DDP for 703 steps (45,000 loads) against grad_accum
# (k = 4) for 703 optimizer steps (2,812 micro-steps, 3 epochs of loads).
FIG_DP_STEPS := 703
FIG_DP_STEPS_EVAL := eval.every_loads=11250
FIG_GA_LRS := 0.05,0.1,0.2,0.4,0.8
# DiLoCo's outer Nesterov step: outer rate x momentum on the tuning seeds at periodic averaging's
# best inner rate (to a quarter of the budget), then its own inner rates.
FIG_OUTER := comm.outer_lr=0.4,0.7,1.0 comm.outer_momentum=0.8,0.9
# MobileNetV3-Small costs ~0.25 s per batch of 32 on one core (20x the SmallCNN): 300 steps of 32
# (9,600 loads; its BatchNorm statistics, momentum 0.01, are 95% renewed after 300 steps), 2 reuses
# per fresh batch, evaluated on a fixed 2,000 of the test images (its evaluation costs 20x the
# SmallCNN's per image); GPT-2 tiny on Python's docs with AdamW.
FIG_MOB_SET := dataset=fashion_mnist model=mobilenet_v3_small data.batch_size=32 data.max_test_examples=2000 eval.subset=500 eval.batch_size=500 hardware=ratio hardware.ratio=4 target.value=0.7 budget.example_loads=9600 eval.every_loads=2400
FIG_MOB_LRS := 0.0125,0.025,0.05,0.1,0.2
FIG_MOB_Q := Early training (0.16 epoch)
FIG_LM_SET := dataset=python_docs optim=adamw data.max_test_examples=256 hardware=ratio hardware.ratio=4 budget.example_loads=3200 eval.every_loads=400
FIG_LM_LRS := 0.0003,0.001,0.003,0.01,0.03
FIG_YLIM := --ylim 0.5 0.95
FIG_PRESETS := fig3_schedules_smoke fig4_cifar10_lr_smoke fig5_cifar100_lr_smoke fig6_data_parallel_smoke fig7_gpt2_wikitext2_smoke mobilenet_v3_smoke
endif
FIG_SEEDS := $(FIG_TUNE_SEEDS),$(FIG_MEASURE_SEEDS)
FIG_LRS_2 ?= $(FIG_LRS_1)
FIG_LRS_5 ?= $(FIG_LRS)
FIG_GA_STEPS = $(shell echo $$((4 * $(FIG_DP_STEPS))))
FIG_PICK := --tuning-seeds $(FIG_TUNE_SEEDS) --measuring-seeds $(FIG_MEASURE_SEEDS)
# A multirun whose job directories are named by the swept overrides (optim.lr=0.05,schedule=none,
# seed=0), so that a finished job is found again and skipped; the settings fixed for a figure are
# left out of the name. Exit status 1 (a run diverged, which the figures show) does not stop make.
# budget.stop_at is left out too: a successive-halving stage continues in its run's own directory.
FIG_FIXED := [logger.progress,train.threads,dataset,model,model.width,model.size,model.pretrained,optim,optim.lr_schedule,data.batch_size,data.max_train_examples,data.max_test_examples,data.augment,eval.batch_size,eval.every_loads,eval.subset,budget.example_loads,budget.stop_at,budget.steps,target.value,target.stop,hardware,hardware.ratio,hardware.comm_latency_s,hardware.comm_bandwidth_Bps,launcher,launcher.nproc_per_node,comm.period,comm.outer_optim]
FIG_SWEEP := OMP_NUM_THREADS=1 .venv/bin/echo-run -m logger.progress=false $(FIG_THREADS) 'hydra.sweep.subdir=$${hydra.job.override_dirname}' \
	'hydra.job.config.override_dirname.exclude_keys=$(FIG_FIXED)'
FIG_OK := || [ $$? -eq 1 ]
REPORT := .venv/bin/echo-report
BEST := $(PY) scripts/at_best_lr.py
HALVE := $(PY) scripts/halving.py
FIG_PERIODIC := comm=periodic comm.period=8
# One method tuned by successive halving (the three stages above): $(call TUNED,dir,method label,
# fixed overrides,name of the rate-grid variable,stage-1 extra[,shell words run first on each line,
# which set a variable the overrides use]). A stage whose rates cannot be read (the previous one did
# not run) fails the line: never a sweep at a default rate.
define TUNED
	$(6) $(FIG_SWEEP) hydra.sweep.dir=$(1) $(3) optim.lr=$($(4)) seed=$(FIG_SH_SEED) $(5) $(FIG_OK)
	$(6) R=$$($(HALVE) $(1) --method '$(2)' --seeds $(FIG_SH_SEED) --keep $(FIG_SH_KEEP)) && $(FIG_SWEEP) hydra.sweep.dir=$(1) $(3) $$R seed=$(FIG_TUNE_SEEDS) $(FIG_OK)
	$(6) R=$$($(HALVE) $(1) --method '$(2)' --seeds $(FIG_TUNE_SEEDS) --complete) && $(FIG_SWEEP) hydra.sweep.dir=$(1) $(3) $$R seed=$(FIG_MEASURE_SEEDS) $(FIG_OK)
endef
STAGE := budget.stop_at=$(FIG_SH_STOP)

figures: | $(VENV_STAMP)  ## every figure and the verdict table (SCALE=small|tiny|paper), two sweeps at a time
	$(MAKE) -k -j2 fig-dp fig-speedup fig-schedules fig-augment fig-modern  # the longest chain first
	$(MAKE) verdict

verdict: | $(VENV_STAMP)  ## the verdict table from the figures' runs: $(FIG_OUT)/verdict.md and .csv (scripts/claims.yaml)
	$(REPORT) verdict scripts/claims.yaml $(FIG_RUNS) --out $(FIG_OUT)/verdict

# Figure 1, the Theorem: example loads, steps, sim_s and wall_s to target against reuses per fresh
# batch, 1/p = 1 (SGD), 2, 4, each level at its own best rate, beside the ideal; at the runs'
# target and at FIG_LOW_TARGET.
.PHONY: runs-speedup-1 runs-speedup-2 runs-speedup-4
SPEEDUP = $(FIG_DATA) $(FIG_HW) $(FIG_SPEEDUP_SET)
runs-speedup-1: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/speedup/r1,sgd,$(SPEEDUP) schedule=none,FIG_LRS_1,)
runs-speedup-2: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/speedup/r2,constant(p=0.5),$(SPEEDUP) schedule=constant schedule.p=0.5,FIG_LRS_2,)
runs-speedup-4: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/speedup/r4,constant(p=0.25),$(SPEEDUP) schedule=constant schedule.p=0.25,FIG_LRS_4,)
fig-speedup: runs-speedup-1 runs-speedup-2 runs-speedup-4  ## fig. 1: loads, steps, sim and wall time to target vs 1/p at each level's best rate, beside the ideal
	$(BEST) speedup $(FIG_RUNS)/speedup --out $(FIG_OUT)/speedup $(FIG_PICK)
	$(BEST) speedup $(FIG_RUNS)/speedup --out $(FIG_OUT)/speedup_low --target $(FIG_LOW_TARGET) $(FIG_PICK)
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/speedup --out $(FIG_OUT)/speedup_stats

# Figures 2 and 3 share their runs: the paper's schedules at equal example loads, each at its best
# rate against loads (2), and against loads, steps, epochs, wall-clock and simulated time (3).
.PHONY: runs-schedules runs-sched-none runs-sched-constant runs-sched-cosine runs-sched-linear runs-sched-step
SCHED = $(FIG_SCHED_DATA) $(FIG_SCHED_SET)
runs-sched-none: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/schedules,sgd,$(SCHED) schedule=none,FIG_LRS,$(STAGE))
runs-sched-constant: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/schedules,constant(p=0.5),$(SCHED) schedule=constant,FIG_LRS,$(STAGE))
runs-sched-cosine: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/schedules,cosine,$(SCHED) schedule=cosine,FIG_LRS,$(STAGE))
runs-sched-linear: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/schedules,linear,$(SCHED) schedule=linear,FIG_LRS_5,$(STAGE))
runs-sched-step: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/schedules,step,$(SCHED) schedule=step,FIG_LRS_5,$(STAGE))
runs-schedules: runs-sched-none runs-sched-constant runs-sched-cosine runs-sched-linear runs-sched-step
fig-schedules: runs-schedules  ## figs. 2-3: none/constant/cosine/linear/step at equal loads, at their best rates, on every clock
	$(BEST) curves $(FIG_RUNS)/schedules --out $(FIG_OUT)/schedules $(FIG_PICK) --x example_loads $(FIG_YLIM)
	$(BEST) curves $(FIG_RUNS)/schedules --out $(FIG_OUT)/clocks $(FIG_PICK) --x example_loads step epoch wall_s sim_s $(FIG_YLIM)
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/schedules --out $(FIG_OUT)/schedules_stats

# Figure 4: echoing before or after augmentation (Choi et al.): the schedules' SGD and constant
# p = 1/2 (echoed batches as they were augmented) against the same echoing with each echoed batch
# re-cropped and re-flipped (data.augment_on_echo=true), in augment/.
.PHONY: runs-augment
runs-augment: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/augment,constant(p=0.5)+reaug,$(SCHED) schedule=constant data.augment_on_echo=true,FIG_LRS_5,$(STAGE))
# (shell globs: the run directories exist only once the runs have started)
AUGMENT_RUNS = $(FIG_RUNS)/augment $(FIG_RUNS)/schedules/*schedule=none* $(FIG_RUNS)/schedules/*schedule=constant*
fig-augment: runs-augment runs-sched-none runs-sched-constant  ## fig. 4: echoing with and without re-augmenting the echoed batch, at their best rates
	$(BEST) curves $(AUGMENT_RUNS) --out $(FIG_OUT)/augment $(FIG_PICK) --x example_loads step $(FIG_YLIM)
	$(REPORT) stats $(FIG_PICK) $(AUGMENT_RUNS) --out $(FIG_OUT)/augment_stats

# Figure 5: data parallel with 2 ranks (torchrun), every strategy at its own best rate: all-reduce,
# periodic (H = 8) and grad_accum (k = 4) SGD; Algorithm 2 (on_load), probabilistic averaging and
# all-reduce with p = 1/2 echoing; DiLoCo's outer Nesterov step on periodic averaging (diloco/).
.PHONY: runs-dp runs-dp-diloco runs-dp-steps runs-diloco-inner
DP = $(FIG_DATA) $(FIG_DP_SET)
runs-dp: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/data_parallel,sgd+allreduce,$(DP) schedule=none comm=allreduce,FIG_DP_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/data_parallel,sgd+periodic,$(DP) schedule=none $(FIG_PERIODIC),FIG_DP_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/data_parallel,sgd+grad_accum,$(DP) schedule=none comm=grad_accum,FIG_GA_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/data_parallel,constant(p=0.5)+on_load,$(DP) schedule=constant comm=on_load,FIG_DP_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/data_parallel,constant(p=0.5)+probabilistic,$(DP) schedule=constant comm=probabilistic,FIG_DP_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/data_parallel,constant(p=0.5)+allreduce,$(DP) schedule=constant comm=allreduce,FIG_DP_LRS,$(STAGE))
runs-dp-steps: | $(VENV_STAMP)  # reviewer 1: grad_accum against all-reduce DDP at equal optimizer steps
	$(call TUNED,$(FIG_RUNS)/dp_equal_steps,sgd+allreduce,$(FIG_DATA) $(FIG_DP_COMMON) $(FIG_DP_STEPS_EVAL) budget.example_loads=null budget.steps=$(FIG_DP_STEPS) schedule=none comm=allreduce,FIG_DP_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/dp_equal_steps,sgd+grad_accum,$(FIG_DATA) $(FIG_DP_COMMON) $(FIG_DP_STEPS_EVAL) budget.example_loads=null budget.steps=$(FIG_GA_STEPS) schedule=none comm=grad_accum,FIG_GA_LRS,$(STAGE))
DILOCO = $(DP) schedule=none $(FIG_PERIODIC) comm.outer_optim=nesterov
runs-dp-diloco: runs-dp | $(VENV_STAMP)  # outer rate x momentum at periodic's best rate, then DiLoCo's own rates
	R=$$($(HALVE) $(FIG_RUNS)/data_parallel --method sgd+periodic --seeds $(FIG_TUNE_SEEDS) --complete) && $(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/diloco_outer $(DILOCO) $$R $(FIG_OUTER) seed=$(FIG_TUNE_SEEDS) $(STAGE) $(FIG_OK)
	$(call TUNED,$(FIG_RUNS)/diloco,sgd+periodic+nesterov,$(DILOCO) $$O,FIG_DP_LRS,$(STAGE),$(OUTER_BEST))
OUTER_BEST = O=$$($(HALVE) $(FIG_RUNS)/diloco_outer --method sgd+periodic+nesterov --seeds $(FIG_TUNE_SEEDS) --key comm.outer_lr comm.outer_momentum) &&
runs-diloco-inner: | $(VENV_STAMP)  # DiLoCo's inner rates at a given outer setting: FIG_OUTER_BEST="comm.outer_lr=... comm.outer_momentum=..."
	$(call TUNED,$(FIG_RUNS)/diloco,sgd+periodic+nesterov,$(DILOCO) $(FIG_OUTER_BEST),FIG_DP_LRS,$(STAGE))
fig-dp: runs-dp runs-dp-diloco runs-dp-steps  ## fig. 5: data parallel (2 ranks): accuracy vs loads, communication rounds and bytes; DiLoCo
	$(BEST) curves $(FIG_RUNS)/data_parallel --out $(FIG_OUT)/dp $(FIG_PICK) --x example_loads comm_rounds comm_bytes sim_s $(FIG_YLIM)
	$(BEST) curves $(FIG_RUNS)/data_parallel/*comm=periodic* $(FIG_RUNS)/diloco --out $(FIG_OUT)/diloco $(FIG_PICK) --x example_loads comm_rounds $(FIG_YLIM)
	$(REPORT) dp $(FIG_RUNS)/data_parallel --out $(FIG_OUT)/dp_table
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/data_parallel --baseline sgd+allreduce --out $(FIG_OUT)/dp_stats
	$(BEST) curves $(FIG_RUNS)/dp_equal_steps --out $(FIG_OUT)/dp_equal_steps --x comm_rounds example_loads $(FIG_YLIM) $(FIG_PICK)

# Figure 7: modern architectures, no echoing against 2 reuses per fresh batch (p = 1/2) at equal
# loads, each at its own best rate: MobileNetV3-Small with SGD, GPT-2 (tiny) with AdamW.
.PHONY: runs-modern
runs-modern: | $(VENV_STAMP)
	$(call TUNED,$(FIG_RUNS)/modern_cnn,sgd,$(FIG_MOB_SET) schedule=none,FIG_MOB_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/modern_cnn,constant(p=0.5),$(FIG_MOB_SET) schedule=constant,FIG_MOB_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/modern_lm,sgd,$(FIG_LM_SET) schedule=none,FIG_LM_LRS,$(STAGE))
	$(call TUNED,$(FIG_RUNS)/modern_lm,constant(p=0.5),$(FIG_LM_SET) schedule=constant,FIG_LM_LRS,$(STAGE))
fig-modern: runs-modern  ## fig. 7: MobileNetV3-Small (Fashion-MNIST) and GPT-2 with AdamW (python_docs), no echoing vs echoing
	$(BEST) curves $(FIG_RUNS)/modern_cnn --out $(FIG_OUT)/modern_mobilenet $(FIG_PICK) --x example_loads step sim_s --question '$(FIG_MOB_Q)'
	$(BEST) curves $(FIG_RUNS)/modern_lm --out $(FIG_OUT)/modern_gpt2 $(FIG_PICK) --x example_loads step sim_s --metric test_ppl
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/modern_cnn --out $(FIG_OUT)/modern_mobilenet_stats
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/modern_lm --metric test_ppl --out $(FIG_OUT)/modern_gpt2_stats

# Figure 6: loader speed to echo level, from the advisor (`make advise-grid`: measure this machine,
# the R x echo level grid on the simulated clock, and `make advise`'s recommendation confirmed on
# the real pipeline; README, "The advisor"). Not part of `make figures`: its grid has its own
# budget (105 pilot runs). ADVISE_OUT is the advisor's (results/$(SCALE)/advisor).
ADVISE_OUT ?= results/$(SCALE)/advisor
fig-advisor: | $(VENV_STAMP)  ## fig. 6: the advisor's R x level heatmap and confirmed speed-up, copied to $(FIG_OUT)/advisor*
	$(MAKE) advise-grid
	mkdir -p $(FIG_OUT) && for f in png pdf; do cp $(ADVISE_OUT)/ratios/heatmap.$$f $(FIG_OUT)/advisor.$$f; done
	cp $(ADVISE_OUT)/ratios/advice.md $(FIG_OUT)/advisor.md
	cp $(ADVISE_OUT)/confirm.md $(FIG_OUT)/advisor_confirmed.md

fig-paper: | $(VENV_STAMP)  ## the paper's figures from the experiment presets (SCALE=small|tiny: their _smoke twins)
	for e in $(FIG_PRESETS); do \
	  OMP_NUM_THREADS=1 .venv/bin/echo-run -m experiment=$$e logger.progress=false || [ $$? -eq 1 ] || exit 1; \
	  $(REPORT) curves results/experiments/$$e --out $(FIG_OUT)/presets/$$e --x example_loads step wall_s sim_s || exit 1; \
	done

# ---- the advisor (README, "The advisor") ----
# Replaces the old `advise` target (digits grid). `recommend` measures R once per workload
# (conf/hardware/measured.yaml, git-ignored) and reuses that profile and every finished cell on the
# next call; give ADVISE_ARGS+=--remeasure to measure again (new profile: new cells).
.PHONY: advise advise-fmnist advise-ratios advise-grid
ADVISE := OMP_NUM_THREADS=1 .venv/bin/echo-advise
ADVISE_FOLDER := results/advisor/fmnist-jpeg
# Decode-bound: 256x256 JPEGs decoded per example by one worker; a narrow CNN on 16-pixel crops.
ADVISE_WORKLOAD ?= dataset=image_folder data.root=$(ADVISE_FOLDER) data.image_size=16 data.augment=false \
	model.width=8 data.max_test_examples=500 data.workers=1 train.threads=1 target.value=0.72 budget.example_loads=9600
ADVISE_ARGS ?= --seeds 0 1 2 --budget-fraction 1 --evals 15
advise: | $(VENV_STAMP)  ## measure, recommend, confirm on a decode-bound JPEG folder (Fashion-MNIST upscaled): $(ADVISE_OUT)/
	$(PY) scripts/fmnist_jpeg_folder.py --out $(ADVISE_FOLDER)
	$(ADVISE) recommend $(ADVISE_WORKLOAD) $(ADVISE_ARGS) --out $(ADVISE_OUT)
	$(ADVISE) confirm $(ADVISE_WORKLOAD) --out $(ADVISE_OUT)
	$(REPORT) clock-check $(ADVISE_OUT)/confirm $(ADVISE_OUT)/runs --out $(ADVISE_OUT)/clock_check

# The measured Fashion-MNIST workload. On a CPU its CNN, not its loader, is the bottleneck (R < 1):
# expect "plain SGD" and nothing to confirm; about 30 minutes on 2 cores, minutes on a GPU.
ADVISE_FMNIST ?= dataset=fashion_mnist data.augment=true data.workers=1 data.max_test_examples=2000 train.threads=1
ADVISE_FMNIST_ARGS ?= --levels adaptive p=0.5 --seeds 0 1 --budget-fraction 0.5 --evals 10
advise-fmnist: | $(VENV_STAMP)  ## the same chain on Fashion-MNIST (profile hardware=fmnist): results/advisor/fmnist/
	$(ADVISE) recommend $(ADVISE_FMNIST) --name fmnist $(ADVISE_FMNIST_ARGS) --out results/advisor/fmnist
	$(ADVISE) confirm $(ADVISE_FMNIST) --name fmnist --out results/advisor/fmnist

advise-ratios: | $(VENV_STAMP)  ## R at 1, 2 and 4 loader workers, JPEG folder and Fashion-MNIST: results/advisor/profiles/
	$(PY) scripts/fmnist_jpeg_folder.py --out $(ADVISE_FOLDER)
	for w in 1 2 4; do $(ADVISE) measure $(ADVISE_WORKLOAD) data.workers=$$w --name folder_w$$w --profile-dir results/advisor/profiles || exit 1; done
	for w in 1 2 4; do $(ADVISE) measure $(ADVISE_FMNIST) data.workers=$$w --name fmnist_w$$w --profile-dir results/advisor/profiles || exit 1; done

# For fig-advisor: the R x level heatmap on the measured workload (this machine's step time, assumed
# loader speeds R); 5 x 7 x 3 = 105 pilot runs, roughly 15-25 minutes on 2 CPU cores.
advise-grid: advise  ## R x echo level heatmap on the measured workload: $(ADVISE_OUT)/ratios/
	$(ADVISE) recommend $(ADVISE_WORKLOAD) hardware=measured --ratios 0.5 1 2 4 8 $(ADVISE_ARGS) --max-runs 105 --out $(ADVISE_OUT)/ratios

# ---- benchmarks (README, "Benchmarks"): results/bench/*.json ----
.PHONY: bench bench-overhead bench-pipeline bench-wallclock bench-sweep gpu-smoke
bench: bench-overhead bench-pipeline bench-wallclock  ## every benchmark: runner overhead, pipeline vs DataLoader, wall-clock to target at R=4

bench-overhead: | $(VENV_STAMP)  ## runner over a bare loop, echo step over a plain step: results/bench/bench.json
	OMP_NUM_THREADS=1 $(PY) scripts/bench.py $(BENCH_ARGS)

bench-pipeline: | $(VENV_STAMP)  ## echo-run's input pipeline vs a plain DataLoader on JPEGs: results/bench/pipeline.json
	OMP_NUM_THREADS=1 $(PY) scripts/bench_pipeline.py

# The best rates and echo level from fig-speedup's committed table ($(FIG_OUT)/speedup.csv; a rate it
# lacks from a short pilot); the workload is that figure's, less its simulated loader (this one is real:
# the pipeline throttled to R step-times per batch).
bench-wallclock: | $(VENV_STAMP)  ## wall-clock time to target, best echoing vs best SGD, real pipeline at R=4 (+ clock check): results/bench/wallclock.json
	OMP_NUM_THREADS=1 $(PY) scripts/bench_wallclock.py --rates-csv $(FIG_OUT)/speedup.csv --R 4 $(BENCH_WALL_ARGS) -- $(FIG_DATA) $(FIG_SPEEDUP_SET)

bench-sweep: | $(VENV_STAMP)  ## CPU-seconds per method-seed-epoch of the figures' sweeps; the old and new designs' estimated cost beside the records' (BENCH_SWEEP_ARGS=--measured: no training): results/bench/sweep.json
	OMP_NUM_THREADS=1 $(PY) scripts/bench_sweep.py $(BENCH_SWEEP_ARGS)

gpu-smoke: | $(VENV_STAMP)  ## on one GPU, under 8 minutes: ResNet-18 bf16 step time, image-folder pipeline, idle of SGD vs adaptive, NCCL torchrun: results/bench/gpu.json
	$(PY) scripts/gpu_smoke.py
