"""Core of the CIFAR-10 AutoML repository: data, augmentation, models, training and
metric reporting, shared by trial/, nas/ and retrain/."""
