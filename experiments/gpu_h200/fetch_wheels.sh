#!/usr/bin/env bash
# Download, here (with network), the wheels that the GPU image lacks into .whl/ (git-ignored; the
# device tool carries it with carry: [".whl"]; 64 MiB at most, these are < 5 MiB).
#
# The image has python3.12, jax 0.11.2 + the CUDA 13 plugin, flax, optax, numpyro, orbax-checkpoint,
# matplotlib, tqdm, filelock, xarray, h5py, scipy, pyyaml (and their dependencies: numpy, pandas,
# packaging, typing_extensions). Missing: hydra-core and its omegaconf and antlr4-python3-runtime;
# arviz and, from its Requires-Dist, xarray-einstats, h5netcdf and platformdirs (arviz/__init__
# imports platformdirs; trivflow writes chains.nc through h5netcdf); uncertainties (trivflow.formatting's
# parenthesis notation; pure Python, no required dependency). Versions: those of the CI venv.
#
# antlr4-python3-runtime 4.9.3 (hydra-core needs 4.9.*) exists only as an sdist; `pip wheel` builds
# its pure-Python py3-none-any wheel here.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
PY=${PYTHON:-python3}
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl \
  hydra-core==1.3.8 omegaconf==2.3.1 arviz==0.23.4 xarray-einstats==0.9.1 h5netcdf==1.8.3 platformdirs==4.14.9 \
  uncertainties==3.2.3
"$PY" -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -l .whl
du -sh .whl
