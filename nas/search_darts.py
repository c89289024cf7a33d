"""Search a DARTS cell with NNI; every epoch's architecture is written as epoch_N.json.

    python nas/search_darts.py --help
    python nas/search_darts.py --dataset digits --subset 256 --width 4 --num_cells 3 --epochs 2 --batch_size 32
"""
import sys
from pathlib import Path

# Runs from a checkout with only requirements.txt installed: the core package is found
# beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_automl.darts_search import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
