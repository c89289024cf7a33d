"""Retrain cells (searched, random, DARTS_V2) at one budget and tabulate their test accuracy.

    python nas/cell_table.py --cells outputs/darts/final.json cells/random_*.json DARTS_V2 --seeds 0 1 \
        --table docs/results/nas_table -- --data_dir data
"""
import sys
from pathlib import Path

# Runs from a checkout with only requirements.txt installed: the core package is found
# beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_automl.cell_table import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
