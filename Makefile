# echo-run: `make run` and `make test` create .venv and install the project on first use.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
SCALE ?= small

.PHONY: help install run test test-fast bench advise figures clean-runs

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
	.venv/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# ---- figures: `make figures` runs what is missing (a finished run is never re-run) and redraws ----
# Runs go to results/$(SCALE)/<figure>/<overrides>/; figures to results/figures/ (SCALE=paper:
# results/figures/paper/). SCALE=small: the embedded digits data, minutes on a laptop CPU.
# SCALE=paper: CIFAR-10 / ResNet-18 at the data set's own budget (a GPU machine with the data).
.PHONY: fig-methods fig-best-lr fig-claim fig-dp fig-advisor fig-paper
ifeq ($(SCALE),paper)
FIG_RUNS := results/paper
FIG_OUT := results/figures/paper
FIG_SET := dataset=cifar10 hardware=gpu_network_storage
FIG_CLAIM_SET := dataset=cifar10 hardware=gpu_network_storage
FIG_LRS := 0.025,0.05,0.1,0.2,0.4
FIG_PS := 1.0,0.5,0.25,0.125
FIG_CLAIM_LRS := 0.025,0.1
FIG_YLIM :=
FIG_DP_SET := dataset=cifar10 hardware=gpu_network_storage launcher.nproc_per_node=4
FIG_PRESETS := fig3_schedules fig4_cifar10_lr fig5_cifar100_lr fig6_data_parallel fig7_gpt2_wikitext2 mobilenet_v3
else
FIG_RUNS := results/small
FIG_OUT := results/figures
FIG_SET := train.threads=1 budget.example_loads=2874 eval.every_loads=287 hardware=ratio hardware.ratio=4
FIG_CLAIM_SET := train.threads=1 budget.example_loads=2874 eval.every_loads=96 hardware=ratio hardware.ratio=4
FIG_LRS := 0.01,0.03,0.1,0.3,1.0
FIG_PS := 1.0,0.5,0.25,0.125,0.0625
FIG_CLAIM_LRS := 0.01,0.05
FIG_YLIM := --ylim 0.8 1.0
# Two CPU ranks; each communication round costs about one step-time (5 ms + 600 KB at 100 MB/s).
FIG_DP_SET := $(FIG_SET) launcher.nproc_per_node=2 hardware.comm_latency_s=0.005 hardware.comm_bandwidth_Bps=1e8
FIG_PRESETS := fig3_schedules_smoke fig4_cifar10_lr_smoke fig5_cifar100_lr_smoke fig6_data_parallel_smoke fig7_gpt2_wikitext2_smoke mobilenet_v3_smoke
endif
# A multirun whose job directories are named by the swept overrides (comm=on_load,seed=0), so that a
# finished job is found again and skipped; the settings fixed for a figure are left out of the name:
# after changing one of them, delete results/$(SCALE)/<figure>/ (echo-run refuses to reuse a
# directory that holds another configuration). Exit status 1 (a run diverged, which the figures
# show) does not stop make.
FIG_FIXED := [logger.progress,train.threads,budget.example_loads,eval.every_loads,dataset,hardware,hardware.ratio,hardware.comm_latency_s,hardware.comm_bandwidth_Bps,launcher,launcher.nproc_per_node,optim.lr_schedule]
FIG_SWEEP := OMP_NUM_THREADS=1 .venv/bin/echo-run -m logger.progress=false 'hydra.sweep.subdir=$${hydra.job.override_dirname}' \
	'hydra.job.config.override_dirname.exclude_keys=$(FIG_FIXED)'
FIG_OK := || [ $$? -eq 1 ]
REPORT := .venv/bin/echo-report

figures: $(VENV_STAMP)  ## methods, best-lr, claim and data-parallel figures (SCALE=small|paper), two sweeps at a time
	$(MAKE) -j2 fig-methods fig-best-lr fig-claim fig-dp

fig-methods: $(VENV_STAMP)  ## SGD, cosine, constant p, batch and adaptive echoing vs loads, steps, wall and sim time
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/methods $(FIG_SET) schedule=none,constant,cosine seed=0,1,2 $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/methods $(FIG_SET) echo=batch,adaptive seed=0,1,2 $(FIG_OK)
	$(REPORT) curves $(FIG_RUNS)/methods --out $(FIG_OUT)/methods $(FIG_YLIM)

fig-best-lr: $(VENV_STAMP)  ## learning-rate sweep: best lr per method (table) and methods at their best lr
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/best_lr $(FIG_SET) optim.lr=$(FIG_LRS) schedule=none,constant,cosine seed=0,1 $(FIG_OK)
	$(REPORT) best-lr $(FIG_RUNS)/best_lr --out $(FIG_OUT)/best_lr $(FIG_YLIM)

fig-claim: $(VENV_STAMP)  ## loads, steps and sim time to target vs reuses per fresh batch (1/p), with the ideal
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/claim $(FIG_CLAIM_SET) optim.lr_schedule=constant optim.lr=$(FIG_CLAIM_LRS) schedule=constant schedule.p=$(FIG_PS) seed=0,1,2 $(FIG_OK)
	$(REPORT) claim $(FIG_RUNS)/claim --out $(FIG_OUT)/claim

# ---- data-parallel echoing (README, "Data-parallel echoing with torchrun") ----
.PHONY: dp-table
DP_SET := launcher=torchrun launcher.nproc_per_node=2 train.threads=1 hardware=cluster_ethernet
dp-table: $(VENV_STAMP)  ## 2 ranks on digits: comm rounds, bytes, accuracy and sim_s per comm strategy
	$(FIG_SWEEP) hydra.sweep.dir=results/small/dp $(DP_SET) comm=allreduce,grad_accum,periodic,on_load,probabilistic seed=0,1 $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=results/small/dp $(DP_SET) comm=allreduce schedule=none seed=0,1 $(FIG_OK)
	mkdir -p results/bench && $(PY) scripts/dp_table.py results/small/dp | tee results/bench/dp_table.md

# ---- the input pipeline, the clocks and the advisor (README, "The input pipeline, ...") ----
ADVISE_ARGS ?= --seeds 0 1 --set train.threads=1
advise: $(VENV_STAMP)  ## loader speed R x echo level grid on digits (simulated clock): heatmap + table in results/advisor/
	OMP_NUM_THREADS=1 $(PY) -m runner.advise $(ADVISE_ARGS)

bench: $(VENV_STAMP)  ## runner overhead, echo-step cost, wall-clock speed-up at R=4: results/bench/bench.json
	OMP_NUM_THREADS=1 $(PY) scripts/bench.py $(BENCH_ARGS)

fig-dp: $(VENV_STAMP)  ## data-parallel: allreduce, grad_accum, periodic vs on_load and probabilistic echoing (torchrun)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/fig_dp $(FIG_DP_SET) launcher=torchrun schedule=none comm=allreduce,grad_accum,periodic seed=0,1 $(FIG_OK)
	$(FIG_SWEEP) hydra.sweep.dir=$(FIG_RUNS)/fig_dp $(FIG_DP_SET) launcher=torchrun schedule=constant comm=on_load,probabilistic seed=0,1 $(FIG_OK)
	$(REPORT) curves $(FIG_RUNS)/fig_dp --out $(FIG_OUT)/dp --x example_loads step comm_rounds sim_s $(FIG_YLIM)

fig-advisor: $(VENV_STAMP)  ## the advisor's heatmap (make advise: R x echo level) copied to results/figures/advisor.*
	OMP_NUM_THREADS=1 $(PY) -m runner.advise $(ADVISE_ARGS) --out results/$(SCALE)/advisor
	mkdir -p $(FIG_OUT) && for f in png pdf; do cp results/$(SCALE)/advisor/heatmap.$$f $(FIG_OUT)/advisor.$$f; done
	cp results/$(SCALE)/advisor/advice.md $(FIG_OUT)/advisor.md

fig-paper: $(VENV_STAMP)  ## the paper's figures from the experiment presets (SCALE=small: their _smoke twins)
	for e in $(FIG_PRESETS); do \
	  OMP_NUM_THREADS=1 .venv/bin/echo-run -m experiment=$$e logger.progress=false || [ $$? -eq 1 ] || exit 1; \
	  $(REPORT) curves results/experiments/$$e --out $(FIG_OUT)/presets/$$e --x example_loads step wall_s sim_s || exit 1; \
	done
