"""The optimizers' rules, one module per ``torch.optim`` class (imported by :mod:`hypergradient.optim`,
whose lower-case names ``hg.optim.sgd``, ``hg.optim.adam``, ... are the constructors)."""
