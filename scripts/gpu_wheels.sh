#!/usr/bin/env bash
# Wheels for a GPU machine that reaches no package registry (the `device` tool's machines: Python 3.12, torch with
# CUDA, transformers and peft already there): flctl's own wheel and every dependency of flctl that image lacks or
# holds at another version (grpcio and protobuf must be the versions flctl's generated stubs were made with).
# Usage: bash scripts/gpu_wheels.sh [DIR]   (default .whl, ignored by git); then on the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl && export PYTHONPATH=/tmp/site
# bench/gpu.py is the script to run there.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.whl}"
rm -rf "$out" && mkdir -p "$out"
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$out" . >/dev/null
platforms=()
for n in 2_28 2_27 2_24 2_17 2014 1; do
    case "$n" in 2014) platforms+=(--platform manylinux2014_x86_64) ;; 1) platforms+=(--platform manylinux1_x86_64) ;;
        *) platforms+=(--platform "manylinux_${n}_x86_64") ;; esac
done
# Versions as flctl is tested with (pyproject.toml's pins, and what .venv holds for the rest).
wheels=(
    grpcio==1.85.1 protobuf==7.36.2
    cryptography==50.0.2 cffi==2.1.1 pycparser==3.12
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    typer==0.29.3 annotated-doc==0.0.7 rich==15.0.0
    textual==8.2.8 textual-plotext==1.0.1 plotext==5.3.2 platformdirs==4.14.9 mdit-py-plugins==0.7.0
    linkify-it-py==2.2.0 uc-micro-py markdown-it-py==4.3.0
    paramiko==5.1.0 bcrypt==5.0.0 pynacl==1.6.2 invoke==3.0.3
    websockets==17.4 ml-dtypes==0.7.0 safetensors==0.8.0 nvidia-ml-py
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$out" "${wheels[@]}"
du -sh "$out"
ls "$out"
