#!/usr/bin/env bash
# Issue 17: the benchmarks, the L = 40 table and L = 80 on one GPU, in one command of ≈ 9 minutes.
#
#   bash experiments/gpu_h200/run.sh OUTDIR [--tiny] [driver options]
#
# On a fresh GPU machine (bare, no network): installs the wheels the image lacks from .whl/ (made
# here by experiments/gpu_h200/fetch_wheels.sh; the device tool carries the ignored folder with
# carry: [".whl"]) into /tmp/site, puts /tmp/site and src/ on PYTHONPATH (trivflow is not
# installed), then runs experiments/gpu_h200/driver.py, which writes one JSON per step into OUTDIR
# as soon as the step ends. --tiny: the same steps at tiny sizes (the CPU smoke test,
# tests/test_gpu_script.py). The Python is $PYTHON (default python3). README.md beside this file.
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 1 ]; then
  echo "usage: bash experiments/gpu_h200/run.sh OUTDIR [--tiny] [--budget SECONDS] [--only bench l40 l80]" >&2
  exit 2
fi
OUTDIR=$1; shift
PYTHON=${PYTHON:-python3}
mkdir -p "$OUTDIR/logs"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

# What the GPU image lacks (hydra-core, omegaconf, antlr4, arviz and what arviz imports, uncertainties): install
# the carried wheels without the network, without dependencies (the image has the rest).
if ! "$PYTHON" -c "import hydra, omegaconf, arviz, uncertainties" >/dev/null 2>&1; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    echo "[gpu] installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into /tmp/site"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl 2>&1 | tee "$OUTDIR/logs/pip_install.log"
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
  else
    echo "[gpu] hydra/omegaconf/arviz/uncertainties missing and no .whl/ (run experiments/gpu_h200/fetch_wheels.sh here," \
         "carry .whl)" >&2
  fi
fi
"$PYTHON" -c "import hydra, omegaconf, arviz, uncertainties, trivflow" 2>&1 | tee "$OUTDIR/logs/import_check.log"
exec "$PYTHON" experiments/gpu_h200/driver.py "$OUTDIR" "$@"
