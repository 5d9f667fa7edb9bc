#!/usr/bin/env bash
# Set up flctl on a fresh machine: system tools the tests use, a virtual environment in .venv,
# PyTorch's CPU build first (so nothing pulls a multi-GB CUDA build), then flctl with its extras.
# Safe to run again. Usage: bash scripts/setup.sh [--all]
#   (default)  what `flctl quickstart` and the core tests need: torch (CPU), aws, azure, test
#   --all      also the heavy extras of the optional capabilities (privacy: TenSEAL, Opacus, PSI;
#              stats: pandas, matplotlib; mlops: MLflow, TensorBoard, Lightning; Flower 1.42 in its own
#              .venv-flower, for Flower apps). CI installs these;
#              without them, the tests of those capabilities are skipped, saying which extra is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

all=0
for arg in "$@"; do
  case "$arg" in
    --all) all=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (allowed: --all)" >&2; exit 2 ;;
  esac
done

start=$SECONDS
step() { printf '[%4ss] %s\n' "$((SECONDS - start))" "$*"; }

need=()
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)     # the SSH deployment tests run their own sshd
command -v tmux >/dev/null || need+=(tmux)            # the console smoke test drives flctl in tmux
[ -x /usr/bin/tinyproxy ] || need+=(tinyproxy)       # the wss transport's tests: a real HTTP proxy
if [ "$all" = 1 ]; then                                # flctl deploy image build and its tests (FLCTL_IMAGE_TESTS=1)
  for tool in podman buildah mmdebstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
  # flctl deploy slurm's test runs a one-node Slurm cluster (slurmctld, slurmd, munge) on 127.0.0.1
  for pkg in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    [ -x "/usr/sbin/${pkg%%:*}" ] || command -v "${pkg%%:*}" >/dev/null || need+=("${pkg#*:}")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing system packages: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "please install: ${need[*]} (the tests use them)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  step "making .venv with $("$PYTHON" -V)"
  "$PYTHON" -m venv .venv
fi
step "upgrading pip"
.venv/bin/python -m pip install -q --upgrade pip
step "installing PyTorch's CPU build (torch==2.13.0: a 200 MB download, 750 MB installed)"
.venv/bin/python -m pip install -q torch==2.13.0
extras=torch,aws,azure,test
[ "$all" = 1 ] && extras=all,test
step "installing flctl with extras: $extras"
.venv/bin/python -m pip install -q -e ".[$extras]"
if [ "$all" = 1 ] && [ ! -x .venv-flower/bin/flwr ]; then
  # Flower apps inside flctl (flctl.node.flower): flwr 1.42 needs protobuf<7 and flctl pins protobuf 7 with grpcio,
  # so Flower gets a venv of its own, found beside .venv (or through FLCTL_FLOWER_PYTHON)
  step "making .venv-flower with flwr[simulation]==1.42.0 (Flower apps inside flctl)"
  "$PYTHON" -m venv .venv-flower
  .venv-flower/bin/python -m pip install -q "flwr[simulation]==1.42.0"
fi
step "done: .venv holds $(du -sh .venv | cut -f1); run '. .venv/bin/activate', then 'flctl --help'"
