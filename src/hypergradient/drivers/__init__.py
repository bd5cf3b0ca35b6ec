"""Layer 4, the drivers, which own the control flow: offline and online hyperparameter optimization
(outer steps, the meta-batch mean, the active steps), sign-based and hypergradient-descent outer
optimizers, meta-learning episodes (task samplers, Reptile / first-order MAML, meta-testing), meta-batches
spread over torch.distributed ranks.
Imports core, optim, linalg, estimators and diagnostics (never learners, reproduce or cli)."""

from .distributed import MetaBatch, RankFailed
from .hd import SGDHD, AdamHD
from .meta import (FirstOrderMAML, InitUpdate, MetaIteration, MetaLearner, MetaTestResult, MetaTrainResult, Reptile,
                   Task, TaskSampler, confidence_interval, meta_test, meta_train)
from .offline import OfflineResult, offline_step, run_offline
from .online import LinearDecay, Lockstep, OnlineResult, lockstep, run_online
from .sign import SignDescent

__all__ = ["run_online", "OnlineResult", "lockstep", "Lockstep", "run_offline", "OfflineResult", "offline_step",
           "Reptile", "FirstOrderMAML", "InitUpdate", "MetaIteration", "LinearDecay", "SignDescent", "SGDHD", "AdamHD",
           "Task", "TaskSampler", "MetaLearner", "MetaTrainResult", "MetaTestResult", "meta_train", "meta_test",
           "confidence_interval", "MetaBatch", "RankFailed"]
