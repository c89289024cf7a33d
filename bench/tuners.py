"""The tuner benchmark on 15 tabular benchmarks (cifar_automl/tuner_bench.py; docs/tuners.md).

    python bench/tuners.py                  # every tuner, table and mode into docs/results/tuners
    python bench/tuners.py --help
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_automl.tuner_bench import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
