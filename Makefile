# `make run`: set up and run the workflow on the embedded default (no network, no GPU).
# `make ablations`: the paper's three ablations on the local grid (after `make run`).
# `make generators`: every generator kind on every dataset, to the quality profile (after `make run`).
# `make test`: set up (both environments) and run all the tests. `make test-fast`: the unit tests
# only (no workflow runs or dry runs, Slurm or vLLM). `make bench`: the benchmarks.
# `make setup-gpu`: the two GPU environments of a cluster (paper scale), from their lock files.
# `make rehearsal`: the paper config's whole DAG, shrunk, against the local Hub (docs/testing.md,
# "Rehearsal of the paper scale"); `make rehearsal-workstation` the one-GPU tier's the same way, under
# its profile (one GPU job at a time). `make docs`: the documentation site, built strictly into site/.
# `make report`: Snakemake's report of the local run (after `make run`), one HTML page.
# `make gpu-check`: the cost model's throughputs measured on this node's GPU (docs/measurements.md).
# Set-up is stamped: a second call takes seconds.
# The interpreter, of the Python version pyproject.toml's requires-python names (set-up stops at
# once on another: e.g. `make setup PYTHON=python3.11`).
PYTHON ?= python3
# The index torch is installed from (pip's --index-url). Empty, the default: plain pip, right where
# pip already finds torch's CPU build (CI, where only PyPI is reachable). On an ordinary Linux
# machine plain pip takes the CUDA build, several GB: there, as the README says,
# `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX ?=
TORCH := torch==2.13.0
TORCH_INSTALL = pip install -q $(TORCH)$(if $(TORCH_INDEX), --index-url $(TORCH_INDEX))
VENV := .venv
VLLM_VENV := .venv-vllm
GPU_VENV := .venv-gpu
GPU_VLLM_VENV := .venv-gpu-vllm
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup setup-vllm setup-gpu run report ablations generators test test-fast bench rehearsal rehearsal-workstation gpu-check lint docs clean
setup: $(VENV)/.done
setup-vllm: $(VLLM_VENV)/.done
setup-gpu: $(GPU_VENV)/.done $(GPU_VLLM_VENV)/.done

$(VENV)/.done: requirements.txt requirements-nodeps.txt requirements-docs.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --dry-run --no-deps -e .   # an unsupported Python stops here, named
	$(BIN)/$(TORCH_INSTALL)
	$(BIN)/pip install -q -r requirements.txt -r requirements-docs.txt
	$(BIN)/pip install -q --no-deps --ignore-requires-python -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# vLLM's CPU build pins transformers<5.20, so it lives in its own environment with this package.
$(VLLM_VENV)/.done: requirements-vllm.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --dry-run --no-deps -e .
	$(VLLM_VENV)/bin/$(TORCH_INSTALL)
	$(VLLM_VENV)/bin/pip install -q -r requirements-vllm.txt
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec  # they break vllm's import
	$(VLLM_VENV)/bin/pip install -q --no-deps --ignore-requires-python -r requirements-nodeps.txt
	$(VLLM_VENV)/bin/pip install -q --no-deps -e .
	touch $@

# On a Linux x86_64 login node with Python 3.11 and PyPI, in the checkout the compute nodes share:
# .venv-gpu (every rule but vLLM's: CUDA torch, bitsandbytes, snakemake) and .venv-gpu-vllm (CUDA
# vLLM), the interpreters config.yaml's `environments` names. Each lock file lists every package
# at its exact version, installed as listed (--no-deps: pip resolves nothing), then the
# environment is checked against it (python -m bonito_repro.cluster.environments).
# $(1): the environment's folder; $(2): its lock file
define gpu_environment
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install -q --no-deps -r $(2)
	$(1)/bin/pip install -q --no-deps --ignore-requires-python -r requirements-nodeps.txt
	$(1)/bin/pip install -q --no-deps -e .
	$(1)/bin/python -m bonito_repro.cluster.environments --python $(1)/bin/python $(2) requirements-nodeps.txt
	touch $(1)/.done
endef

$(GPU_VENV)/.done: envs/main-gpu.lock.txt requirements-nodeps.txt pyproject.toml
	$(call gpu_environment,$(GPU_VENV),envs/main-gpu.lock.txt)

$(GPU_VLLM_VENV)/.done: envs/vllm-gpu.lock.txt requirements-nodeps.txt pyproject.toml
	$(call gpu_environment,$(GPU_VLLM_VENV),envs/vllm-gpu.lock.txt)

# bonito-repro run: Snakemake with the scale's profile and config (src/bonito_repro/workflow/run.py)
run: setup
	bonito-repro run --scale local

# from finished outputs only: it reruns nothing
report: setup
	bonito-repro run --scale local --report results/paper/report.html

ablations: setup
	bonito-repro ablations jobs --scale local
	bonito-repro run --scale local ablations

generators: setup
	bonito-repro run --scale local results/paper/quality_profile.md --configfile config/every_generator.yaml

# config/rehearsal.yaml in REHEARSAL_DIR, with a fresh local Hub and HF_HOME; on the one-node Slurm,
# with its site settings: make rehearsal REHEARSAL_SITE=.ci/slurm_site.yaml REHEARSAL_ARGS="--profile slurm"
REHEARSAL_DIR ?= .rehearsal
REHEARSAL_SITE ?=
REHEARSAL_ARGS ?= --cores all
rehearsal: setup setup-vllm
	python -m bonito_repro.localhub rehearse $(REHEARSAL_DIR) --configfile config/rehearsal.yaml \
		$(addprefix --configfile ,$(REHEARSAL_SITE)) -- $(REHEARSAL_ARGS)

# On a GPU node with .venv-gpu (and .venv-gpu-vllm for vLLM), no network needed: random-weight models
# of the paper's shapes, results/preflight/gpu_calibration.json for the cost model. The device is
# passed, never guessed; CI (tests/test_gpu_check.py): make gpu-check GPU_CHECK_PYTHON=.venv/bin/python
# GPU_CHECK_DEVICE=cpu GPU_CHECK_SHAPES=tiny GPU_CHECK_ARGS="--configfile config/smoke.yaml --seconds 1"
GPU_CHECK_PYTHON ?= $(GPU_VENV)/bin/python
GPU_CHECK_DEVICE ?= cuda
GPU_CHECK_SHAPES ?= mistral_7b llama2_7b
GPU_CHECK_ARGS ?=
gpu-check:
	$(GPU_CHECK_PYTHON) -m bonito_repro gpu-check --device $(GPU_CHECK_DEVICE) --shape $(GPU_CHECK_SHAPES) $(GPU_CHECK_ARGS)

# config/workstation.yaml shrunk by config/rehearsal.yaml, under the workstation profile (gpu=1:
# the GPU jobs one at a time, which the command reads back from Snakemake's log), in REHEARSAL_DIR/workstation
rehearsal-workstation: setup setup-vllm
	python -m bonito_repro.localhub rehearse $(REHEARSAL_DIR)/workstation --configfile config/workstation.yaml \
		--configfile config/rehearsal.yaml -- --profile workstation $(REHEARSAL_ARGS)

# Every marker; the slowest tests are listed so that a test growing slow shows in CI's log.
test: setup setup-vllm
	pytest -q --durations=25

# The edit-test loop: what runs in seconds (see the markers in pyproject.toml).
test-fast: setup
	pytest -q --durations=10 -m "not slow and not dag and not slurm and not vllm and not wheel"

# Each benchmark prints a ratio against a baseline measured in the same run (see bench/*.py).
bench: setup setup-vllm
	snakemake --profile local results/ctga/train.parquet results/models/smollm2 \
		results/generators/bonito/adapter   # what they read
	for b in ctga train generate eval; do python bench/$${b}_bench.py || exit 1; done
	$(VLLM_VENV)/bin/python bench/api_bench.py   # beside the authors' package, in the vLLM environment

# The site of README.md and docs/ (mkdocs.yml); a warning (a broken link or anchor) fails it.
docs: setup
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

lint: setup
	snakemake --lint
	snakemake --lint --configfile config/local.yaml

clean:
	rm -rf results .snakemake site
