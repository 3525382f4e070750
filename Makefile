# scale_space_diffusion: `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.DEFAULT_GOAL := help
.PHONY: help install data demo demo-ddpm test test-slow benchmark bench-gpu clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -c constraints.txt -e ".[test]"
	touch $@

install: $(STAMP) ## Create .venv and install the package, pinned by constraints.txt

data: install ## Fetch Fashion-MNIST (Debian package if root, else the HF hub) and cache it as Arrow
	@if [ ! -d $(FMNIST) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "apt-get could not install dataset-fashion-mnist; trying the Hugging Face hub"; fi
	$(PY) -m scale_space_diffusion.data

demo: data ## Train SSD on Fashion-MNIST 32x32 on CPU (2.5 min on 2 AVX512-BF16 cores), sample 64 PNGs and a grid; the same from the shipped longer-trained model
	$(VENV)/bin/ssd fit --config configs/ssd_fmnist32.yaml
	$(VENV)/bin/ssd predict --config configs/ssd_fmnist32.yaml --ckpt_path last
	$(VENV)/bin/ssd sample --model pretrained/ssd_fmnist32 --out outputs/ssd_fmnist32/pretrained

demo-ddpm: data ## The same with the DDPM reference
	$(VENV)/bin/ssd fit --config configs/ddpm_fmnist32.yaml
	$(VENV)/bin/ssd predict --config configs/ddpm_fmnist32.yaml --ckpt_path last

test: data ## Run the default test suite (CPU, under 10 min)
	$(PY) -m pytest -q

test-slow: data ## Run the slow tests (training runs, multi-process)
	$(PY) -m pytest -q -m slow

benchmark: data ## Compare DDPM, SSD and SD: FLOPs, speed, FID/KID (PRESET=quick|standard|full)
	$(PY) -m benchmarks --preset $(or $(PRESET),quick)

bench-gpu: ## On one GPU: DDPM, SSD-4L, SSD-2L at the CelebA-64 network, < 6 min (.venv's python, else python3)
	$(if $(wildcard $(PY)),$(PY),python3) -m benchmarks gpu

clean: ## Remove outputs and caches (keeps .venv)
	rm -rf outputs lightning_logs .pytest_cache
