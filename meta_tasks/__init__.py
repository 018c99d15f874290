"""meta_tasks: inner training problems for meta-training learned optimizers.

Tasks (μP and SP models with on-device data), the named meta-training
distributions, and the named held-out evaluation suites. Depends on nothing
else in the project; tensorflow_datasets and scikit-learn are imported only
when a dataset that needs them is loaded.
"""

from meta_tasks.base import (KINDS, PARAMETERIZATIONS, SuiteEntry, Task, TaskFamily,
                             normalize_loss)
from meta_tasks.datasets import DATASETS, IMAGE_DATASETS, DatasetNotPreparedError
from meta_tasks.families import distribution_names, get_distribution
from meta_tasks.models import ACTIVATIONS
from meta_tasks.suites import get_suite, suite_names
from meta_tasks.tasks import ImageCNNTask, ImageMLPTask, QuadraticTask, TransformerLMTask
from meta_tasks.text import TEXT_DATASETS

__all__ = [
    "ACTIVATIONS", "DATASETS", "IMAGE_DATASETS", "KINDS", "PARAMETERIZATIONS", "TEXT_DATASETS",
    "DatasetNotPreparedError", "ImageCNNTask", "ImageMLPTask", "QuadraticTask", "SuiteEntry",
    "Task", "TaskFamily", "TransformerLMTask", "distribution_names", "get_distribution",
    "get_suite", "normalize_loss", "suite_names",
]
