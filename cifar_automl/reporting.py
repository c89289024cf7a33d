"""Where metrics go: NNI (when the trial runs under NNI), TensorBoard, the terminal,
and metrics.json in the output directory so a result outlives the experiment."""
import os
import time
from pathlib import Path

from .files import atomic_write_json


def under_nni():
    """NNI's trial runner sets NNI_PLATFORM for every trial it starts."""
    return bool(os.environ.get('NNI_PLATFORM'))


def nni_parameters():
    """The tuner's parameters for this trial ({} when standalone)."""
    if not under_nni():
        return {}
    import nni
    return nni.get_next_parameter() or {}


def default_output_dir():
    if under_nni() and os.environ.get('NNI_OUTPUT_DIR'):
        return Path(os.environ['NNI_OUTPUT_DIR'])
    return Path('outputs') / time.strftime('trial-%Y%m%d-%H%M%S')


def tensorboard_dir(logdir, output_dir):
    """`nnictl tensorboard start` reads <trial output directory>/tensorboard."""
    if under_nni():
        return Path(os.environ.get('NNI_OUTPUT_DIR', output_dir)) / 'tensorboard'
    return Path(logdir) if logdir else None


class Reporter:
    """Sends each epoch's metrics and the final ones to every sink that is active."""

    def __init__(self, output_dir, logdir=''):
        self.output_dir = Path(output_dir)
        self.nni = None
        if under_nni():
            import nni
            self.nni = nni
        self.writer = None
        tb_dir = tensorboard_dir(logdir, output_dir)
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(tb_dir))

    def intermediate(self, metrics):
        """metrics: {'default': validation accuracy, ...numbers}, one call per epoch."""
        if self.nni:
            self.nni.report_intermediate_result(metrics)
        if self.writer:
            for key, value in metrics.items():
                if key not in ('default', 'epoch'):
                    self.writer.add_scalar(key, value, metrics['epoch'])
            self.writer.flush()

    def final(self, nni_metrics, details):
        """nni_metrics: numbers only (NNI's WebUI plots them); details: everything for metrics.json."""
        if self.nni:
            self.nni.report_final_result(nni_metrics)
        if self.writer:
            self.writer.close()
        atomic_write_json({**nni_metrics, **details}, self.output_dir / 'metrics.json')
