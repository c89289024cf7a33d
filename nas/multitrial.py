"""Multi-trial NAS on NAS-Bench-201 with NNI's strategies, each run scored from the benchmark's table
and compared with the exact expectation of random search (cifar_automl/nas_multitrial.py).

    python nas/multitrial.py --output_dir runs/multitrial
    python nas/multitrial.py --datasets cifar10,cifar100,imagenet16-120 --strategies random,evolution:population_size=20 --output_dir runs/multitrial
"""
import sys
from pathlib import Path

# Runs from a checkout with only requirements.txt installed: the core package is found
# beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_automl.nas_multitrial import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
