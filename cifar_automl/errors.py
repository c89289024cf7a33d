"""The error type for bad user input: a leaf module, so that config.py, arch_files.py and
models/ can all raise it without importing each other."""


class ConfigError(ValueError):
    """Bad user input, raised before any training starts. The message names the
    source (flag, NNI parameter, file), the key and what is allowed."""
