# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel on machines without CUDA. GPU users: `make TORCH=` and install your own CUDA torch into .venv first.
TORCH ?= torch==2.13.0
export OMP_WAIT_POLICY := PASSIVE

.PHONY: demo test test-other-cpu lint install bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The core install is all the demo needs; the tests add the dev extras (pytest, hypothesis, ruff, Ray).
$(VENV)/.installed-core: $(BIN)/python pyproject.toml
	@if [ -n "$(TORCH)" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  $(BIN)/python -m pip install -q "$(TORCH)"; fi
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-core
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed-core
	$(BIN)/qstar demo --out runs/demo

lint: install
	$(BIN)/ruff check qstar tests benchmarks scripts

# Two pytest workers of one thread each (pytest-xdist): on 2 cores the suite takes half the time of one process with
# two threads, as many tests are too small to keep two threads busy.
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2

test: install lint
	$(PYTEST) tests

# The learning and numerics tests again under the other kind of CPU kernels (AVX-512 machines run AVX2's, AVX2
# machines the plain C++ ones) and on one thread, so a test that holds for one CPU's rounding only fails here too.
LEARNING_TESTS := tests/test_grpo.py tests/test_sft.py tests/test_reward.py tests/test_ei.py tests/test_retry.py \
	tests/test_losses.py tests/test_optim.py tests/test_model.py tests/test_model_checkpoint.py tests/test_sampler.py \
	tests/test_search_integration.py tests/test_backends_hf.py tests/test_lab_demo.py
test-other-cpu: install
	@cap=$$($(BIN)/python -c "import torch; print('avx2' if 'AVX512' in torch.backends.cpu.get_cpu_capability() \
	  else 'default')"); echo "== learning and numerics tests with ATEN_CPU_CAPABILITY=$$cap, 1 thread"; \
	  ATEN_CPU_CAPABILITY=$$cap $(PYTEST) $(LEARNING_TESTS)

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
