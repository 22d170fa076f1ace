"""The runtime: the one place that loads a trained model with its data, builds optimisers and
schedules, runs the training loop and evaluates.

* :func:`load_trained` — a checkpoint's model (sized, fitted and checked) with its data;
* :class:`Optim`, :func:`make_optimizer`, :func:`make_scheduler` — optimiser and schedule
  (linear warm-up, then cosine / step / constant);
* :func:`fit` — the one training loop (epochs or steps, hooks, progress, resume, AMP);
  :func:`train` runs it from scratch into a run directory;
* :func:`evaluate` — accuracy and loss (:class:`EvalResult`); :func:`evaluate_variants` — the
  batch-major engine for many weight variants, bit-identical to evaluating each (or stopping
  a variant early, :class:`StopRule`);
* :func:`input_grams`, :func:`output_error` — what a layer sees on real data, and the output
  error of a changed kernel from it;
* :func:`time_steps` — seconds of one training step and one inference batch, the same
  measurement for every model.
"""

from ._engine import (
    StopRule,
    evaluate_variants,
    evaluate_variants_naive,
    paired_drop_beyond,
    paired_drop_within,
)
from ._evaluate import EvalResult, evaluate
from ._grams import gram_supported, input_grams, output_error
from ._load import (
    Trained,
    check_data_fits,
    check_weights,
    load_trained,
    run_record,
)
from ._loop import HISTORY_KEYS, Fit, fit
from ._optim import (
    BATCH_SIZE,
    DEFAULT_OPTIM,
    OPTIMIZERS,
    SCHEDULES,
    Optim,
    lr_factor,
    make_optimizer,
    make_scheduler,
)
from ._timing import StepTimes, time_steps
from ._train import RUN_FILES, history_dataset, run_config, save_state_dict, train

__all__ = [
    "BATCH_SIZE", "DEFAULT_OPTIM", "HISTORY_KEYS", "OPTIMIZERS", "RUN_FILES", "SCHEDULES",
    "EvalResult", "Fit", "Optim", "StepTimes", "StopRule", "Trained", "check_data_fits",
    "check_weights",
    "evaluate", "evaluate_variants", "evaluate_variants_naive", "fit", "gram_supported",
    "history_dataset", "input_grams", "load_trained", "output_error", "paired_drop_beyond",
    "paired_drop_within",
    "lr_factor", "make_optimizer", "make_scheduler", "run_config", "run_record",
    "save_state_dict", "time_steps", "train",
]
