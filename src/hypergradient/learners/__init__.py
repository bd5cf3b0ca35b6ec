"""Layer 5, learners (library API): meta-learners as inner problems, task samplers, data sets that ship
inside packages (:mod:`.data`). Imports core, optim and drivers (never reproduce, testing or cli).

Which part of the model (or of the training) is the hyperparameter λ shared across tasks, and which
part w adapts to each task:

* :class:`ANIL` (Raghu et al. 2020): the body (feature extractor) is λ via ``model_hparams``, the
  head is w. HyperDistill's sinusoid setting: MLP 1-100-100-100-1, body = the first three layers.
* :class:`MetaSGD` (Li et al. 2017): element-wise learning rates, ``Hyper(lr, "element")``. The
  initialization is learned by the driver's Reptile / first-order MAML, not by the meta-gradient.
* :class:`WarpGrad` (Flennerhag et al. 2020), in the HyperDistill paper's form: warp layers
  interleaved with the task layers are λ (``model_hparams``) and are trained by the hypergradient
  of the query loss; only the task layers adapt.
* :class:`MetaWeightNet` (Shu et al. 2019): a small MLP maps each example's training loss to a
  weight in (0, 1); its parameters are λ via ``hparam_modules``. The validation loss does not use
  λ, so the direct term is zero (HyperDistill then fixes its scale to 1).

Each learner is a :class:`~hypergradient.drivers.MetaLearner` (``problem(task)``,
``init_hparams()``, ``init_weights()``) and works with every online estimator; estimators that
cannot learn optimizer hyperparameters (evograd) refuse Meta-SGD with a clear error.

    >>> learner = ANIL(anil_mlp(), horizon=30)
    >>> lam = learner.init_hparams()
    >>> res = meta_train(learner, "hyperdistill", lam, torch.optim.Adam(lam.values(), 1e-3),
    ...                  SinusoidTasks(), iterations=100)
"""

from .anil import ANIL, anil_mlp
from .base import ProblemLearner, supervised
from .meta_sgd import MetaSGD
from .meta_weight_net import MetaWeightNet, WeightNet
from .tasks import SinusoidTasks
from .warpgrad import WarpGrad, warp_mlp

__all__ = ["supervised", "ProblemLearner", "ANIL", "MetaSGD", "WarpGrad", "MetaWeightNet", "WeightNet",
           "anil_mlp", "warp_mlp", "SinusoidTasks"]
