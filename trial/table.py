"""A tabular-benchmark trial: looks the tuner's configuration up in a table and reports its value
(cifar_automl/table_trial.py; nni_configs/tabular_nb201.yml).

    python trial/table.py --help
"""
import sys
from pathlib import Path

# NNI runs this file from the code directory with no package installed: the core package is
# found beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_automl.table_trial import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
