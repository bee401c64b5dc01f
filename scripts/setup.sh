#!/usr/bin/env bash
# One-shot set-up of a checkout: system libraries, a virtual environment in .venv, the PyTorch
# build that fits this machine (CPU or CUDA; see scripts/_setup_plan.py) and adaptmem (editable)
# with the extras that fit it. Safe to run again: it only installs what is missing.
#
#   bash scripts/setup.sh                       # auto: CUDA build and extras cuda,dev if nvidia-smi lists a GPU,
#                                               #       else the CPU build and extras all,dev
#   bash scripts/setup.sh --extras all,dev,triton   # other extras (CI adds triton for its kernel tests)
#   bash scripts/setup.sh --device cpu          # force the CPU build (or --device cuda)
#   bash scripts/setup.sh --dry-run             # print the plan, install nothing
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS_OVERRIDE="" DEVICE_ARG=auto DRY_RUN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --extras) EXTRAS_OVERRIDE=${2:?--extras needs a value}; shift 2 ;;
        --device) DEVICE_ARG=${2:?--device needs cpu, cuda or auto}; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

START=$SECONDS STEP=0 STEPS=6
step() {  # a numbered step with the time since the start
    STEP=$((STEP + 1))
    echo "setup [$STEP/$STEPS] $* (at $((SECONDS - START)) s)"
}
pip_install() {  # pip's own progress on a terminal; in a log, without the "already satisfied" lines
    if [ -t 1 ]; then
        python -m pip install "$@"
    else
        python -m pip install --progress-bar off "$@" 2>&1 | awk '!/^Requirement already satisfied/ { print; fflush() }'
    fi
}

step "system libraries"
# ProcGen through envpool needs the Qt 5 GUI runtime from the system.
if ldconfig -p 2>/dev/null | grep -q libQt5Gui.so.5; then
    echo "setup:   Qt 5 (libQt5Gui) is present"
elif [ "$DRY_RUN" = 1 ]; then
    echo "setup:   would install libqt5gui5 (needed by envpool's ProcGen)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup:   installing libqt5gui5 (needed by envpool's ProcGen)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libqt5gui5 >/dev/null
else
    echo "setup:   ProcGen needs Qt 5; run: sudo apt-get install -y libqt5gui5 (ProcGen tests skip until then)" >&2
fi

PY=${PYTHON:-python3}
step "virtual environment .venv"
if [ "$DRY_RUN" = 1 ]; then
    PLAN_PY=$PY
    [ -x .venv/bin/python ] && PLAN_PY=.venv/bin/python
    echo "setup:   would create .venv with $PY if missing; planning with $PLAN_PY"
    eval "$("$PLAN_PY" scripts/_setup_plan.py --device "$DEVICE_ARG")"
    [ -n "$EXTRAS_OVERRIDE" ] && EXTRAS=$EXTRAS_OVERRIDE
    echo "setup: plan: device=$DEVICE"
    if [ ${#TORCH_ARGS[@]} -gt 0 ]; then
        echo "setup: plan: pip install ${TORCH_ARGS[*]}"
    else
        echo "setup: plan: keep the installed torch"
    fi
    [ ${#TORCH_FALLBACK_ARGS[@]} -gt 0 ] && echo "setup: plan: if that fails: pip install ${TORCH_FALLBACK_ARGS[*]}"
    echo "setup: plan: pip install -e .[$EXTRAS]"
    exit 0
fi
if [ -x .venv/bin/python ]; then
    echo "setup:   reusing .venv ($(.venv/bin/python --version))"
else
    "$PY" -m venv .venv
    echo "setup:   created .venv ($(.venv/bin/python --version))"
fi
. .venv/bin/activate

step "pip"
python -m pip install -q --upgrade pip
echo "setup:   $(python -m pip --version | cut -d' ' -f1-2)"

step "PyTorch"
eval "$(python scripts/_setup_plan.py --device "$DEVICE_ARG")"
if [ -n "$EXTRAS_OVERRIDE" ]; then
    EXTRAS=$EXTRAS_OVERRIDE
    echo "setup:   extras set by --extras: $EXTRAS"
fi
if [ ${#TORCH_ARGS[@]} -gt 0 ]; then
    echo "setup:   pip install ${TORCH_ARGS[*]}"
    if ! pip_install "${TORCH_ARGS[@]}"; then
        [ ${#TORCH_FALLBACK_ARGS[@]} -gt 0 ] || exit 1
        echo "setup:   that failed; falling back to the default index: pip install ${TORCH_FALLBACK_ARGS[*]}" \
             "(on Linux the CUDA build, several GB)" >&2
        pip_install "${TORCH_FALLBACK_ARGS[@]}"
    fi
fi

step "adaptmem with extras [$EXTRAS]"
pip_install -e ".[$EXTRAS]"

step "check"
python - "$DEVICE" <<'EOF'
import sys

import torch

import adaptmem

build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
print(f"setup:   adaptmem {adaptmem.__version__}, torch {torch.__version__} ({build} build), "
      f"CUDA available: {torch.cuda.is_available()}")
if sys.argv[1] == "cuda" and not torch.version.cuda:
    print("setup:   warning: this machine has an NVIDIA GPU but pip installed a CPU build of torch (pip's configured "
          "sources offer one); to replace it: .venv/bin/python -m pip uninstall -y torch && "
          "bash scripts/setup.sh", file=sys.stderr)
EOF
echo "setup: done in $((SECONDS - START)) s; .venv is $(du -sh .venv | cut -f1)." \
     "Next: .venv/bin/python examples/srwm_demo.py"
