#!/usr/bin/env bash
# Set up flctl on a fresh machine: system tools the tests use, a virtual environment in .venv,
# PyTorch's CPU build first (so nothing pulls a multi-GB CUDA build), then flctl with every extra.
# Safe to run again. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)     # the SSH deployment tests run their own sshd
command -v tmux >/dev/null || need+=(tmux)            # the console smoke test drives flctl in tmux
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "please install: ${need[*]} (the tests use them)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch, before anything that depends on torch.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[torch,aws,azure,test]'
echo "flctl is installed in .venv: run '. .venv/bin/activate', then 'flctl --help'"
