"""Layer 4, the drivers: online hyperparameter optimization, sign-based and hypergradient-descent outer
optimizers, meta-learning episodes (task samplers, Reptile / first-order MAML, meta-testing).
Imports core, optim, linalg, estimators and diagnostics (never learners, reproduce or cli)."""

from .hd import SGDHD, AdamHD
from .meta import (MetaLearner, MetaTestResult, MetaTrainResult, Task, TaskSampler, confidence_interval,
                   meta_test, meta_train)
from .online import LinearDecay, OnlineResult, run_online
from .sign import SignDescent

__all__ = ["run_online", "OnlineResult", "LinearDecay", "SignDescent", "SGDHD", "AdamHD", "Task", "TaskSampler",
           "MetaLearner", "MetaTrainResult", "MetaTestResult", "meta_train", "meta_test", "confidence_interval"]
