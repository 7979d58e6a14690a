#!/usr/bin/env bash
# cryptofeed 2.4.1 (and aiokafka for its Kafka backend) in its own virtual environment, OUTSIDE the
# repository, for bench/vs_cryptofeed.py. cryptofeed is never a tickflow dependency.
#
#   bench/setup_cryptofeed.sh [DIR]    # default: ../.bench-venvs/cryptofeed next to the repository
#
# The package index has cryptofeed 2.4.1 as an sdist only: it is built here (Cython, a C compiler).
# The versions below are the set that built and ran the benchmark (2026-11-22, Python 3.11).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$(dirname "$repo")/.bench-venvs/cryptofeed}"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$dir/bin/python" ]; then
    "$python" -m venv "$dir"
fi
"$dir/bin/pip" install -q --upgrade pip wheel setuptools 'Cython==3.3.1'
"$dir/bin/pip" install -q \
    cryptofeed==2.4.1 aiokafka==0.14.0 \
    uvloop==0.23.0 websockets==17.4 aiohttp==3.14.5 yapic.json==1.9.5 order_book==0.6.1 \
    requests==2.34.2 pyyaml==6.0.3
"$dir/bin/python" -c 'import cryptofeed, aiokafka; print("cryptofeed", cryptofeed.__version__ if hasattr(cryptofeed, "__version__") else "2.4.1", "ok")'
echo "cryptofeed venv: $dir (bench/vs_cryptofeed.py finds it there, or pass --cryptofeed-python $dir/bin/python)"
