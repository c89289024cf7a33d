# cifar-automl: the repository with its pinned requirements, ready to run an NNI experiment.
#
#   docker build -t cifar-automl .
#   docker run --gpus all -p 127.0.0.1:8080:8080 -v "$PWD/data:/workspace/cifar-automl/data" cifar-automl
#
# The default command runs nni_configs/cifar10_tpe.yml in the foreground (the container lives as
# long as the experiment); pass another command to run something else, e.g.
#   docker run --gpus all cifar-automl nnictl create --config nni_configs/cifar10_hyperband.yml --port 8080 --foreground
#
# GPUs reach the container through the NVIDIA Container Toolkit on the host (docs/gpu.md): `--gpus all`
# (or `--gpus '"device=1"'`) picks them; the image names none itself, so a plain `docker run` gets no GPU
# even where the NVIDIA runtime is Docker's default. A GPU trial in a container without one fails at once
# (the GPU configs pass --device cuda). bench/gpu_check.py checks the GPU path inside the container:
#   docker run --gpus all cifar-automl python bench/gpu_check.py
#
# Base: Debian's Python 3.11, the version requirements.txt is pinned for (the nvidia/cuda Ubuntu
# images ship 3.10 or 3.12). CUDA comes with the PyPI torch wheel (its nvidia-* libraries); the
# toolkit adds the driver and nvidia-smi, which NNI's GPU scheduler reads, as asked below.
FROM python:3.11.7-slim-bookworm

ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# --compile on a GPU: Triton builds a small C launcher for its kernels at run time, with the system's
# C compiler, which the slim image lacks (Python's headers are in the image already).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace/cifar-automl

# Requirements first, so that editing the code does not reinstall torch.
COPY requirements.txt .
RUN python -m pip install -r requirements.txt

COPY . .

# The NNI WebUI (publish it on 127.0.0.1 only and reach it through an SSH tunnel: README).
EXPOSE 8080
CMD ["nnictl", "create", "--config", "nni_configs/cifar10_tpe.yml", "--port", "8080", "--foreground"]
