#!/usr/bin/env bash
# Install fastnn with everything it needs, get Fashion-MNIST, train the README's model.
#   bash scripts/quickstart.sh [extra `fastnn train` options]
# Data: Debian's dataset-fashion-mnist package where apt-get can be used (root or
# passwordless sudo); otherwise `fastnn train` downloads the four files itself,
# SHA-256-checked, into ~/.cache/fastnn.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=skip; fi
    if [ "$sudo" != skip ]; then
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -q && $sudo apt-get install -y -q dataset-fashion-mnist \
            || echo "quickstart: apt-get failed; fastnn will download the data instead" >&2
    fi
fi

python -m pip install -e .
exec fastnn train --dataset fashion-mnist --hidden 128,64 --epochs 10 --batch-size 64 \
    --optimizer adam --lr 1e-3 --seed 0 --save model.npz "$@"
