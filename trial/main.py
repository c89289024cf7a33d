"""Train a CIFAR-10 classifier; under NNI, the tuner's parameters override the flags.

    python trial/main.py --help
"""
import sys
from pathlib import Path

# NNI uploads the code directory and runs this file from it, with no package
# installed: the core package is found beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_automl.trial import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
