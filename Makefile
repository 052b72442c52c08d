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
# One figure per question (README, "Results"), each method at its own best learning rate: the best
# mean over the tuning seeds of the metric at equal example loads, the verdict table's rule, from a
# grid of 5 rates x 5 seeds (2 tuning, 3 measuring; where a figure uses one fixed rate, the comment
# there says why).
#   SCALE=small (default): Fashion-MNIST (offline from /usr/share/datasets/fashion-mnist), SmallCNN
#     width 8, on this machine's CPUs. Three seeds took about 6,200 CPU-seconds (50-55 minutes on 2
#     cores with -j2); five seeds, the modern models' grids and dp_equal_steps/ take about 2.5 times
#     that (an estimate, not yet measured).
#     Figures and tables: results/figures/ (committed).
#   SCALE=tiny: the same figures on the embedded digits (augmentation: a 4,096-image slice of
#     Fashion-MNIST), 2 rates x 5 seeds, for a quick look, results/tiny/figures/.
#   SCALE=paper: CIFAR-10 / ResNet-18 (MobileNetV3 on CIFAR-10, GPT-2 on WikiText-2) at 30 epochs,
#     on a GPU machine with the data: results/figures/paper/.
# The venv is an order-only prerequisite: an edited pyproject.toml does not reinstall in the middle
# of an hour of runs (make install does).
# Runs go to results/$(SCALE)/<figure>/<swept overrides>/; after changing a figure's fixed settings
# below, delete results/$(SCALE)/<figure>/ (echo-run refuses a directory that holds another config).
.PHONY: figures verdict fig-speedup fig-schedules fig-augment fig-dp fig-modern fig-advisor fig-paper
# No winner's curse: each method's best rate is chosen on the tuning seeds and its effect measured on
# the measuring seeds at that rate (scripts/claims.yaml's tuning_seeds and measuring_seeds, the same
# lists; tests/test_claims_rows.py checks them against `make -n`). Every rate runs every seed, so the
# same-rate rows (lr: same) are measured on all five.
FIG_TUNE_SEEDS := 0,1
FIG_MEASURE_SEEDS := 2,3,4
FIG_SEEDS := $(FIG_TUNE_SEEDS),$(FIG_MEASURE_SEEDS)
ifeq ($(SCALE),paper)
FIG_RUNS := results/paper
FIG_OUT := results/figures/paper
FIG_THREADS :=
FIG_DATA := dataset=cifar10 model=resnet18 target.value=0.85
FIG_HW := hardware=gpu_network_storage
FIG_SPEEDUP_SET := optim.lr_schedule=constant target.stop=true budget.example_loads=1500000 budget.steps=200000 eval.every_loads=10000
FIG_LRS_1 := 0.025,0.05,0.1,0.2,0.4
FIG_LRS_4 := 0.0125,0.025,0.05,0.1,0.2
FIG_LRS_16 := 0.00625,0.0125,0.025,0.05,0.1
FIG_SCHED_SET := budget.example_loads=1500000 eval.every_loads=50000
FIG_LRS := 0.025,0.05,0.1,0.2,0.4
FIG_AUG_DATA := $(FIG_DATA) $(FIG_HW)
FIG_AUG_SET := data.augment=true budget.example_loads=1500000 eval.every_loads=50000
FIG_DP_COMMON := launcher=torchrun launcher.nproc_per_node=4 data.batch_size=128 hardware=cluster_ethernet
FIG_DP_SET := $(FIG_DP_COMMON) budget.example_loads=1500000 eval.every_loads=50000
FIG_DP_LR := 0.1
FIG_DP_LRS := 0.025,0.05,0.1,0.2,0.4
FIG_DP_STEPS := 2930
FIG_DP_STEPS_EVAL := eval.every_loads=500000
FIG_GA_LRS := 0.1,0.2,0.4,0.8,1.6
FIG_MOB_SET := dataset=cifar10 model=mobilenet_v3_small hardware=gpu_network_storage target.value=0.8 budget.example_loads=1500000 eval.every_loads=50000
FIG_MOB_LRS := 0.025,0.05,0.1,0.2,0.4
FIG_LM_SET := dataset=wikitext2 model=gpt2 model.size=small model.pretrained=true data.batch_size=16 optim=adamw hardware=gpu_network_storage target.value=30 budget.example_loads=27900 eval.every_loads=3100
FIG_LM_LRS := 2e-5,5e-5,1e-4,2e-4,4e-4
FIG_YLIM :=
FIG_PRESETS := fig3_schedules fig4_cifar10_lr fig5_cifar100_lr fig6_data_parallel fig7_gpt2_wikitext2 mobilenet_v3
else ifeq ($(SCALE),tiny)
FIG_RUNS := results/tiny
FIG_OUT := results/tiny/figures
FIG_THREADS := train.threads=1
FIG_DATA := dataset=digits
FIG_HW := hardware=ratio hardware.ratio=4
FIG_SPEEDUP_SET := optim.lr_schedule=constant target.stop=true budget.example_loads=2874 budget.steps=600 eval.every_loads=96
FIG_LRS_1 := 0.05,0.1
FIG_LRS_4 := 0.025,0.05
FIG_LRS_16 := 0.0125,0.025
FIG_SCHED_SET := budget.example_loads=1437 eval.every_loads=160
FIG_LRS := 0.05,0.1
FIG_AUG_DATA := dataset=fashion_mnist model.width=8 data.max_train_examples=4096 data.max_test_examples=500 target.value=0.7 $(FIG_HW)
FIG_AUG_SET := data.augment=true budget.example_loads=2048 eval.every_loads=512
FIG_DP_COMMON := launcher=torchrun launcher.nproc_per_node=2 data.batch_size=16 $(FIG_HW) hardware.comm_latency_s=0.005 hardware.comm_bandwidth_Bps=1e8
FIG_DP_SET := $(FIG_DP_COMMON) budget.example_loads=1437 eval.every_loads=479
FIG_DP_LR := 0.05
FIG_DP_LRS := 0.05,0.2
FIG_DP_STEPS := 45
FIG_DP_STEPS_EVAL := eval.every_loads=1440
FIG_GA_LRS := 0.05,0.2
FIG_MOB_SET := dataset=digits model=mobilenet_v3_small $(FIG_HW) budget.example_loads=480 eval.every_loads=160
FIG_MOB_LRS := 0.05
FIG_LM_SET := dataset=python_docs optim=adamw data.max_test_examples=128 $(FIG_HW) budget.example_loads=800 eval.every_loads=400
FIG_LM_LRS := 0.003
FIG_YLIM := --ylim 0.5 1.0
FIG_PRESETS := fig3_schedules_smoke fig4_cifar10_lr_smoke fig5_cifar100_lr_smoke fig6_data_parallel_smoke fig7_gpt2_wikitext2_smoke mobilenet_v3_smoke
else
FIG_RUNS := results/small
FIG_OUT := results/figures
# The workload: Fashion-MNIST, SmallCNN at width 8 (SGD's learning curve of width 32 within about
# 0.01, at a seventh of the cost: ~20 ms per batch of 64 on one core), evaluated on a fixed random 2,000
# test images (one standard error 0.009 near 0.8), on a simulated accelerator whose loader needs 4
# step-times per batch (sim_s), target test accuracy 0.80 (see fig-speedup).
FIG_THREADS := train.threads=1
FIG_DATA := dataset=fashion_mnist model.width=8 data.max_test_examples=2000 eval.batch_size=1000 target.value=0.80
FIG_HW := hardware=ratio hardware.ratio=4
# Time to target: constant learning rate (the Theorem's setting; a decaying rate would tie the
# trajectory to the budget), each run stops at the target, capped at 48,000 loads and 4,000 steps
# (1/p = 16 reached 0.80 in 2,400-2,900 steps in the pilot). 0.80 is where SGD at a constant rate
# is still rising (14,000-18,000 loads, a quarter epoch, at its best rates); 0.85 needs ~60,000
# loads at a constant rate and would cost this figure ~4x more (over 2 hours of CPU instead of 35
# minutes).
FIG_SPEEDUP_SET := optim.lr_schedule=constant target.stop=true budget.example_loads=48000 budget.steps=4000 eval.every_loads=1280
# Rate grids centred on 0.05 for SGD and halved per 4x reuse (pilots: 1/p = 16 diverges from the
# target at 0.05 and does best near 0.005-0.01); 5 rates, x2 apart.
FIG_LRS_1 := 0.0125,0.025,0.05,0.1,0.2
FIG_LRS_4 := 0.00625,0.0125,0.025,0.05,0.1
FIG_LRS_16 := 0.003125,0.00625,0.0125,0.025,0.05
# Equal loads: 200 fresh batches (0.21 epoch) with the cosine learning rate over them; the echo
# schedules take 2-3.2x as many steps (cosine: 3.16 steps per fresh batch on average).
FIG_SCHED_SET := budget.example_loads=12800 eval.every_loads=1600
FIG_LRS := 0.0125,0.025,0.05,0.1,0.2
# The schedules' grid goes one step further: on 0.0125-0.2, four of the five schedules did best at 0.2.
FIG_SCHED_LRS := 0.0125,0.025,0.05,0.1,0.2,0.4
FIG_AUG_DATA := $(FIG_DATA) $(FIG_HW)
FIG_AUG_SET := data.augment=true budget.example_loads=10240 eval.every_loads=2048
# Two gloo ranks of 32 (64 per step, as one process); a round costs 5 ms + 140 KB at 100 MB/s, about
# a quarter of a step. One rate for every strategy but grad_accum: a 2-rank torchrun job costs ~15
# CPU-seconds to start, so 5 rates x 3 seeds x 8 strategies would be 120 jobs; 0.05 is the
# single-process SGD rate of the pilots. grad_accum (k = 4: a 4x larger batch per optimizer step)
# gets its own 5 rates, as the reviewers asked.
FIG_DP_COMMON := launcher=torchrun launcher.nproc_per_node=2 data.batch_size=32 $(FIG_HW) hardware.comm_latency_s=0.005 hardware.comm_bandwidth_Bps=1e8
FIG_DP_SET := $(FIG_DP_COMMON) budget.example_loads=12800 eval.every_loads=1600
FIG_DP_LR := 0.05
# Reviewer 1's comparison at equal optimizer steps (dp_equal_steps/): all-reduce DDP for 200 steps
# (12,800 loads, as above) against grad_accum (k = 4) for 800 micro-steps, i.e. 200 optimizer steps on
# 51,200 loads, each over its own 5 rates (drawn against communication rounds, which are optimizer
# steps for both; `step` counts grad_accum's micro-steps). Algorithm 2 (on_load) also runs over FIG_DP_LRS, for the
# reviewers' Q3 against grad_accum at their own best rates (the other strategies: one rate, compared
# at the same rate).
FIG_DP_LRS := 0.0125,0.025,0.05,0.1,0.2
FIG_DP_STEPS := 200
FIG_DP_STEPS_EVAL := eval.every_loads=6400
FIG_GA_LRS := 0.05,0.1,0.2,0.4,0.8
# MobileNetV3-Small costs ~0.45 s per batch of 64 on one core (20x the SmallCNN): 200 fresh batches
# of 32 (6,400 loads; after 100 steps of 64 its BatchNorm statistics, momentum 0.01, had not
# settled and SGD tested at chance), one rate (0.05), 3 seeds; GPT-2 tiny on Python's docs, AdamW
# at 3e-3 (pilot: perplexity 139 after 200 steps), 200 fresh batches of 16 blocks.
FIG_MOB_SET := dataset=fashion_mnist model=mobilenet_v3_small data.batch_size=32 data.max_test_examples=1000 eval.batch_size=500 hardware=ratio hardware.ratio=4 target.value=0.7 budget.example_loads=6400 eval.every_loads=3200
# Three rates each (a 5 x 5 grid of MobileNet runs would cost about 2 CPU-hours); the verdict says
# "not informative" when a method's best rate is at the grid's edge.
FIG_MOB_LRS := 0.025,0.05,0.1
FIG_LM_SET := dataset=python_docs optim=adamw data.max_test_examples=256 hardware=ratio hardware.ratio=4 budget.example_loads=3200 eval.every_loads=400
FIG_LM_LRS := 0.001,0.003,0.01
FIG_YLIM := --ylim 0.5 0.9
FIG_PRESETS := fig3_schedules_smoke fig4_cifar10_lr_smoke fig5_cifar100_lr_smoke fig6_data_parallel_smoke fig7_gpt2_wikitext2_smoke mobilenet_v3_smoke
endif
FIG_SCHED_LRS ?= $(FIG_LRS)
FIG_GA_STEPS = $(shell echo $$((4 * $(FIG_DP_STEPS))))
FIG_PICK := --tuning-seeds $(FIG_TUNE_SEEDS) --measuring-seeds $(FIG_MEASURE_SEEDS)
# A multirun whose job directories are named by the swept overrides (optim.lr=0.05,schedule=none,
# seed=0), so that a finished job is found again and skipped; the settings fixed for a figure are
# left out of the name. Exit status 1 (a run diverged, which the figures show) does not stop make.
# budget.stop_at is left out too: a successive-halving stage continues in its run's own directory.
FIG_FIXED := [logger.progress,train.threads,dataset,model,model.width,model.size,model.pretrained,optim,optim.lr_schedule,data.batch_size,data.max_train_examples,data.max_test_examples,data.augment,eval.batch_size,eval.every_loads,eval.subset,budget.example_loads,budget.stop_at,budget.steps,target.value,target.stop,hardware,hardware.ratio,hardware.comm_latency_s,hardware.comm_bandwidth_Bps,launcher,launcher.nproc_per_node,comm.outer_lr,comm.outer_momentum]
FIG_SWEEP := OMP_NUM_THREADS=1 .venv/bin/echo-run -m logger.progress=false $(FIG_THREADS) 'hydra.sweep.subdir=$${hydra.job.override_dirname}' \
	'hydra.job.config.override_dirname.exclude_keys=$(FIG_FIXED)'
FIG_OK := || [ $$? -eq 1 ]
REPORT := .venv/bin/echo-report
BEST := $(PY) scripts/at_best_lr.py
DILOCO := comm.outer_optim=nesterov comm.outer_lr=0.7 comm.outer_momentum=0.9

figures: | $(VENV_STAMP)  ## every figure and the verdict table (SCALE=small|tiny|paper), two sweeps at a time
	$(MAKE) -k -j2 fig-speedup fig-schedules fig-augment fig-dp fig-modern
	$(MAKE) verdict

verdict: | $(VENV_STAMP)  ## the verdict table from the figures' runs: $(FIG_OUT)/verdict.md and .csv (scripts/claims.yaml)
	$(REPORT) verdict scripts/claims.yaml $(FIG_RUNS) --out $(FIG_OUT)/verdict

# Figure 1, the Theorem: example loads, steps, sim_s and wall_s to target against reuses per fresh
# batch, 1/p = 1 (SGD), 2, 4, 8, 16, each level at its own best rate, beside the ideal.
.PHONY: runs-speedup-1 runs-speedup-2 runs-speedup-4 runs-speedup-8 runs-speedup-16
runs-speedup-1: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/speedup/r1 $(FIG_DATA) $(FIG_HW) $(FIG_SPEEDUP_SET) schedule=none optim.lr=$(FIG_LRS_1) seed=$(FIG_SEEDS) $(FIG_OK)
runs-speedup-2: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/speedup/r2 $(FIG_DATA) $(FIG_HW) $(FIG_SPEEDUP_SET) schedule=constant schedule.p=0.5 optim.lr=$(FIG_LRS_1) seed=$(FIG_SEEDS) $(FIG_OK)
runs-speedup-4: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/speedup/r4 $(FIG_DATA) $(FIG_HW) $(FIG_SPEEDUP_SET) schedule=constant schedule.p=0.25 optim.lr=$(FIG_LRS_4) seed=$(FIG_SEEDS) $(FIG_OK)
runs-speedup-8: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/speedup/r8 $(FIG_DATA) $(FIG_HW) $(FIG_SPEEDUP_SET) schedule=constant schedule.p=0.125 optim.lr=$(FIG_LRS_4) seed=$(FIG_SEEDS) $(FIG_OK)
runs-speedup-16: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/speedup/r16 $(FIG_DATA) $(FIG_HW) $(FIG_SPEEDUP_SET) schedule=constant schedule.p=0.0625 optim.lr=$(FIG_LRS_16) seed=$(FIG_SEEDS) $(FIG_OK)
fig-speedup: runs-speedup-1 runs-speedup-2 runs-speedup-4 runs-speedup-8 runs-speedup-16  ## fig. 1: loads, steps, sim and wall time to target vs 1/p at each level's best rate, beside the ideal
	$(BEST) speedup $(FIG_RUNS)/speedup --out $(FIG_OUT)/speedup $(FIG_PICK)
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/speedup --out $(FIG_OUT)/speedup_stats

# Figures 2 and 3 share their runs: the paper's schedules at equal example loads, each at its best
# rate against loads (2), and against loads, steps, epochs, wall-clock and simulated time (3).
.PHONY: runs-schedules
runs-schedules: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/schedules $(FIG_DATA) $(FIG_HW) $(FIG_SCHED_SET) schedule=none,constant,cosine,linear,step optim.lr=$(FIG_SCHED_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
fig-schedules: runs-schedules  ## figs. 2-3: none/constant/cosine/linear/step at equal loads, at their best rates, on every clock
	$(BEST) curves $(FIG_RUNS)/schedules --out $(FIG_OUT)/schedules $(FIG_PICK) --x example_loads $(FIG_YLIM)
	$(BEST) curves $(FIG_RUNS)/schedules --out $(FIG_OUT)/clocks $(FIG_PICK) --x example_loads step epoch wall_s sim_s $(FIG_YLIM)
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/schedules --out $(FIG_OUT)/schedules_stats

# Figure 4: echoing before or after augmentation (Choi et al.): 4 reuses per fresh batch (p = 1/4)
# with the echoed batch re-cropped and re-flipped (data.augment_on_echo=true) or not, and SGD.
.PHONY: runs-augment
runs-augment: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/augment $(FIG_AUG_DATA) $(FIG_AUG_SET) schedule=none optim.lr=$(FIG_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/augment $(FIG_AUG_DATA) $(FIG_AUG_SET) schedule=constant schedule.p=0.25 data.augment_on_echo=false,true optim.lr=$(FIG_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
fig-augment: runs-augment  ## fig. 4: echoing with and without re-augmenting the echoed batch, at their best rates
	$(BEST) curves $(FIG_RUNS)/augment --out $(FIG_OUT)/augment $(FIG_PICK) --x example_loads step $(FIG_YLIM)
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/augment --out $(FIG_OUT)/augment_stats

# Figure 5: Algorithm 2 with 2 ranks (torchrun): allreduce, periodic (H = 4) and grad_accum (k = 4)
# SGD, on_load and probabilistic averaging with p = 1/2 echoing, and DiLoCo's outer Nesterov step
# on periodic, on_load and probabilistic averaging (the same rounds as plain averaging; in diloco/,
# beside data_parallel/, so that the figure of Algorithm 2 stays apart).
.PHONY: runs-dp runs-dp-diloco runs-dp-steps
runs-dp: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/data_parallel $(FIG_DATA) $(FIG_DP_SET) schedule=none comm=allreduce,periodic optim.lr=$(FIG_DP_LR) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/data_parallel $(FIG_DATA) $(FIG_DP_SET) schedule=constant comm=on_load,probabilistic,allreduce optim.lr=$(FIG_DP_LR) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/data_parallel $(FIG_DATA) $(FIG_DP_SET) schedule=constant comm=on_load optim.lr=$(FIG_DP_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/data_parallel $(FIG_DATA) $(FIG_DP_SET) schedule=none comm=grad_accum optim.lr=$(FIG_GA_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
runs-dp-steps: | $(VENV_STAMP)  # reviewer 1: grad_accum against all-reduce DDP at equal optimizer steps
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/dp_equal_steps $(FIG_DATA) $(FIG_DP_COMMON) $(FIG_DP_STEPS_EVAL) budget.example_loads=null budget.steps=$(FIG_DP_STEPS) schedule=none comm=allreduce optim.lr=$(FIG_DP_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/dp_equal_steps $(FIG_DATA) $(FIG_DP_COMMON) $(FIG_DP_STEPS_EVAL) budget.example_loads=null budget.steps=$(FIG_GA_STEPS) schedule=none comm=grad_accum optim.lr=$(FIG_GA_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
runs-dp-diloco: | $(VENV_STAMP)  # one comm per sweep: comm.outer_optim exists only in these strategies' configs
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/diloco $(FIG_DATA) $(FIG_DP_SET) $(DILOCO) schedule=none comm=periodic optim.lr=$(FIG_DP_LR) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/diloco $(FIG_DATA) $(FIG_DP_SET) $(DILOCO) schedule=constant comm=on_load optim.lr=$(FIG_DP_LR) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/diloco $(FIG_DATA) $(FIG_DP_SET) $(DILOCO) schedule=constant comm=probabilistic optim.lr=$(FIG_DP_LR) seed=$(FIG_SEEDS) $(FIG_OK)
fig-dp: runs-dp runs-dp-diloco runs-dp-steps  ## fig. 5: data parallel (2 ranks): accuracy vs loads, communication rounds and bytes; DiLoCo
	$(BEST) curves $(FIG_RUNS)/data_parallel --out $(FIG_OUT)/dp $(FIG_PICK) --x example_loads comm_rounds comm_bytes sim_s $(FIG_YLIM)
	$(BEST) curves $(FIG_RUNS)/data_parallel $(FIG_RUNS)/diloco --out $(FIG_OUT)/diloco $(FIG_PICK) --x example_loads comm_rounds $(FIG_YLIM)
	$(REPORT) dp $(FIG_RUNS)/data_parallel --out $(FIG_OUT)/dp_table
	$(REPORT) stats $(FIG_PICK) $(FIG_RUNS)/data_parallel --baseline sgd+allreduce --out $(FIG_OUT)/dp_stats
	$(BEST) curves $(FIG_RUNS)/dp_equal_steps --out $(FIG_OUT)/dp_equal_steps --x comm_rounds example_loads $(FIG_YLIM) $(FIG_PICK)

# Figure 7: modern architectures, plain SGD (the optimizer's own steps, no echoing) against 4 reuses
# per fresh batch (the level a loader at R = 4 allows for free) at equal loads.
.PHONY: runs-modern
runs-modern: | $(VENV_STAMP)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/modern_cnn $(FIG_MOB_SET) schedule=none optim.lr=$(FIG_MOB_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/modern_cnn $(FIG_MOB_SET) schedule=constant schedule.p=0.25 optim.lr=$(FIG_MOB_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/modern_lm $(FIG_LM_SET) schedule=none optim.lr=$(FIG_LM_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/modern_lm $(FIG_LM_SET) schedule=constant schedule.p=0.25 optim.lr=$(FIG_LM_LRS) seed=$(FIG_SEEDS) $(FIG_OK)
fig-modern: runs-modern  ## fig. 7: MobileNetV3-Small (Fashion-MNIST) and GPT-2 with AdamW (python_docs), SGD vs echoing
	$(BEST) curves $(FIG_RUNS)/modern_cnn --out $(FIG_OUT)/modern_mobilenet $(FIG_PICK) --x example_loads step sim_s
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

bench-sweep: | $(VENV_STAMP)  ## CPU-seconds per method-seed-epoch of the figures' sweeps, old vs new evaluation, and the whole set's estimated cost: results/bench/sweep.json
	OMP_NUM_THREADS=1 $(PY) scripts/bench_sweep.py $(BENCH_SWEEP_ARGS)

gpu-smoke: | $(VENV_STAMP)  ## on one GPU, under 8 minutes: ResNet-18 bf16 step time, image-folder pipeline, idle of SGD vs adaptive, NCCL torchrun: results/bench/gpu.json
	$(PY) scripts/gpu_smoke.py
