# numnet: reproduce "Connections between Numerical Algorithms for PDEs and Neural Networks"
# `make help` lists the targets. Every target creates the virtual environment when it is missing.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PROFILE    ?=
JOBS       ?= 2
THREADS    ?= 1
LOGGER     ?= wandb
RESULTS    ?= results
FIG9       ?= fig9
EXTRA      ?=
ENGINE     ?= runs
PYTEST_ARGS ?=
OUT        ?= gpu-session-out
BUDGET_S   ?= 540

PY    := $(VENV)/bin/python
# empty PROFILE: each script's default profile (quick; quick16 for the 16-channel Fig. 7)
PROFILE_ARG = $(if $(PROFILE),--profile $(PROFILE))
STAMP := $(VENV)/.numnet-installed

.DEFAULT_GOAL := help
.PHONY: help install test test-fast reproduce-fig5 reproduce-fig6 reproduce-fig7 reproduce-fig7-paper reproduce-fig5-paper reproduce-fig6-paper reproduce-early-stop reproduce-fig9 reproduce-fig9-iterated report-fig5 report-fig67 evaluate-fig9 report-fig9 reproduce-stability reproduce-fig2 reproduce-theory reproduce-kernels report reproduce-all bench bench-gpu gpu-session wandb-sync clean

help: ## list the targets
	@echo "numnet make targets (variables: PROFILE=$(or $(PROFILE),<default>) JOBS=$(JOBS) THREADS=$(THREADS) LOGGER=$(LOGGER) RESULTS=$(RESULTS) EXTRA='$(EXTRA)' ENGINE=$(ENGINE) PYTEST_ARGS='$(PYTEST_ARGS)' TORCH_SPEC=$(TORCH_SPEC))"
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(None if (3, 11) <= v <= (3, 13) else "error: numnet needs Python 3.11 to 3.13; $(PYTHON) is %d.%d (PYTHON=python3.12 picks another)" % v)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: ## (re)create the environment; TORCH_SPEC=... picks another torch build (e.g. a CUDA one)
	rm -f $(STAMP)
	$(MAKE) $(STAMP) TORCH_SPEC='$(TORCH_SPEC)'

test: $(STAMP) ## run the whole test suite: unit, integration, cli and slow tiers (about 10 minutes on 2 cores)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## the unit tier only, for the inner loop (under a minute on 2 cores)
	$(PY) -m pytest -m "not slow and not cli and not integration" $(PYTEST_ARGS)

REPRODUCE = $(PY) -m numnet.reproduce
SWEEP = $(REPRODUCE) $(PROFILE_ARG) --jobs $(JOBS) --threads $(THREADS) --logger $(LOGGER) --results $(RESULTS) --extra '$(EXTRA)' --engine $(ENGINE)

reproduce-fig5: $(STAMP) ## Fig. 5 into results/fig5 (PROFILE=quick|paper, JOBS, THREADS, LOGGER)
	$(SWEEP) fig5

reproduce-fig6: $(STAMP) ## Fig. 6 (time-dynamic, Eq. 27) into results/fig6 (PROFILE=quick|paper)
	$(SWEEP) fig6

reproduce-fig7: $(STAMP) ## Fig. 7 (16 channels) into results/fig7 (PROFILE=quick16|paper)
	$(SWEEP) fig7

reproduce-fig7-paper: $(STAMP) ## Fig. 7's headline (SymResNet, 20 blocks, C = 16) under the paper's protocol, the three normalisation rules, into results/fig7-paper (hours; resumes)
	$(SWEEP) fig7-paper

reproduce-fig5-paper: $(STAMP) ## Fig. 5 under the paper's protocol (profile paper: 3 seeds, early stop) into results/fig5-paper (hours; resumes)
	$(SWEEP) fig5-paper

reproduce-fig6-paper: $(STAMP) ## Fig. 6 under the paper's protocol (profile paper: 3 seeds, early stop) into results/fig6-paper (hours; resumes)
	$(SWEEP) fig6-paper

reproduce-early-stop: $(STAMP) ## what profile=paper's early stop costs: 8 runs of Figs. 5/6 for the full 2000 epochs into results/early-stop (about an hour; resumes)
	$(SWEEP) early-stop

reproduce-fig9: $(STAMP) ## Fig. 9 (EED inpainting: FMG net, U-net, single grid, CG) into results/fig9 (PROFILE=long|paper: results/fig9-long, -paper)
	$(REPRODUCE) fig9 $(PROFILE_ARG) --jobs $(JOBS) --threads $(THREADS) --logger $(LOGGER) --results $(RESULTS) --extra '$(EXTRA)'

reproduce-fig9-iterated: $(STAMP) ## beyond the paper: the U-net applied twice (unet_iter) into results/fig9-iterated/fig9 (PROFILE=long: .../fig9-long, about 36 min on one core)
	$(REPRODUCE) fig9 $(PROFILE_ARG) --models unet_iter --jobs 1 --threads $(THREADS) --logger $(LOGGER) --results $(RESULTS)/fig9-iterated --extra '$(EXTRA)'

evaluate-fig9: $(STAMP) ## re-measure the stored Fig. 9 networks against the CG solver, then rebuild its table and figure (FIG9=fig9-long: that profile's)
	$(PY) -m numnet.evaluate_inpainting $(RESULTS)/$(FIG9) --threads $(THREADS)

report-fig9: $(STAMP) ## rebuild results/fig9 table and figure from its stored measurements (FIG9=fig9-long: that profile's)
	$(PY) -m numnet.report.fig9 $(RESULTS)/$(FIG9)

report-fig5: $(STAMP) ## rebuild results/fig5 tables and figure from the stored run summaries
	$(PY) -m numnet.report.fig5 $(RESULTS)/fig5

report-fig67: $(STAMP) ## rebuild results/fig6 and results/fig7 from their stored run summaries
	$(PY) -m numnet.report.fig67 fig6 $(RESULTS)/fig6
	$(PY) -m numnet.report.fig67 fig7 $(RESULTS)/fig7

reproduce-fig2: $(STAMP) ## Fig. 2 (activations and diffusivities) into results/fig2
	$(REPRODUCE) fig2 --results $(RESULTS)

reproduce-theory: $(STAMP) ## Theorem 2, Appendix A, FSI super step, FAS convergence into results/theory (~1 min)
	$(REPRODUCE) theory --results $(RESULTS)

bench: $(STAMP) ## training-speed benchmark into results/bench (ratios against a naive baseline, same run)
	$(PY) -m numnet.bench --results $(RESULTS) --threads $(THREADS)

bench-gpu: $(STAMP) ## stacked training on a CUDA GPU: the gpu- rows of results/bench/bench.csv and results/bench/gpu (needs TORCH_SPEC with CUDA)
	$(PY) -m numnet.bench_gpu --results $(RESULTS)

gpu-session: $(STAMP) ## on a GPU: bench-gpu, then Fig. 7's headline (3 seeds, stacked engine) for BUDGET_S seconds, copied to OUT
	$(PY) -m numnet.gpu_session --out $(OUT) --budget-s $(BUDGET_S) --results $(RESULTS)

reproduce-kernels: $(STAMP) ## Sec. 7.1.3: kernels learned by the ResNet into results/kernels (PROFILE)
	$(REPRODUCE) kernels $(PROFILE_ARG) --results $(RESULTS) --threads $(THREADS)

reproduce-stability: $(STAMP) ## Lipschitz / norm ratios of the trained Fig. 5 and Fig. 7 networks into results/stability
	$(REPRODUCE) stability --results $(RESULTS) --threads $(THREADS)

report: $(STAMP) ## results/REPORT.md from the committed results (one row per paper artefact)
	$(PY) -m numnet.report.overview $(RESULTS)

reproduce-all: ## every artefact on PROFILE, then the report
	$(MAKE) reproduce-fig2 reproduce-theory reproduce-kernels reproduce-fig5 reproduce-fig6 reproduce-fig7 reproduce-fig9
	$(MAKE) reproduce-stability
	$(MAKE) report

wandb-sync: $(STAMP) ## upload offline wandb runs (needs `wandb login` and a network)
	@runs=$$(find $(RESULTS) outputs -type d -name 'offline-run-*' 2>/dev/null); \
	if [ -z "$$runs" ]; then echo "no offline wandb runs found"; else $(VENV)/bin/wandb sync $$runs; fi

clean: ## remove ad-hoc outputs (outputs/), keep results/
	rm -rf outputs .pytest_cache
