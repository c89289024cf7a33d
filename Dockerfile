# cifar-automl: the repository with its pinned requirements, ready to run an NNI experiment.
#
#   docker build -t cifar-automl .
#   docker run --gpus all -p 127.0.0.1:8080:8080 -v "$PWD/data:/workspace/cifar-automl/data" cifar-automl
#
# The default command runs nni_configs/cifar10_tpe.yml in the foreground (the container lives as
# long as the experiment); pass another command to run something else, e.g.
#   docker run --gpus all cifar-automl nnictl create --config nni_configs/cifar10_hyperband.yml --port 8080 --foreground
#
# Base: Debian's Python 3.11, the version requirements.txt is pinned for (the nvidia/cuda Ubuntu
# images ship 3.10 or 3.12). CUDA comes with the PyPI torch wheel (its nvidia-* libraries); the
# NVIDIA container runtime adds the driver and nvidia-smi, which NNI's GPU scheduler reads, as
# asked by the two NVIDIA_ variables below.
FROM python:3.11.7-slim-bookworm

ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /workspace/cifar-automl

# Requirements first, so that editing the code does not reinstall torch.
COPY requirements.txt .
RUN python -m pip install -r requirements.txt

COPY . .

# The NNI WebUI (publish it on 127.0.0.1 only and reach it through an SSH tunnel: README).
EXPOSE 8080
CMD ["nnictl", "create", "--config", "nni_configs/cifar10_tpe.yml", "--port", "8080", "--foreground"]
