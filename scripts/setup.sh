#!/usr/bin/env bash
# One-shot set-up on a fresh machine: system libraries, a virtual environment in .venv and
# adaptmem with its CPU extras. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# ProcGen through envpool needs the Qt 5 GUI runtime from the system.
if ! ldconfig -p 2>/dev/null | grep -q libQt5Gui.so.5; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing libqt5gui5 (needed by envpool's ProcGen)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libqt5gui5 >/dev/null
    else
        echo "setup: ProcGen needs Qt 5; run: sudo apt-get install -y libqt5gui5 (ProcGen tests will skip until then)" >&2
    fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Pin the CPU build first: a bare `torch` requirement would pull a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[all,dev]"
echo "setup: done (.venv ready)"
