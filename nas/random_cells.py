"""Write N cells sampled uniformly from the DARTS space, as random_K.json (what retrain/retrain.py --arch reads).

    python nas/random_cells.py --number 8 --seed 0 --output_dir cells
"""
import sys
from pathlib import Path

# Runs from a checkout with only requirements.txt installed: the core package is found
# beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_automl.random_cells import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
