"""Retrain a searched DARTS cell from scratch, with the DARTS paper's settings by default.

    python retrain/retrain.py --arch outputs/darts/epoch_49.json
    python retrain/retrain.py --arch DARTS_V2 --print_arch true
    python retrain/retrain.py --help
"""
import sys
from pathlib import Path

# Run as a plain script from a checkout, with no package installed: the core package is beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_automl.retrain import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
