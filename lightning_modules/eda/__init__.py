"""Gate sizers (importing registers the models): the exact-STA baselines (TILOS-style greedy, gradient sizing,
Lagrangian relaxation, random search), AGD-style softmax sizing, and the paper's learned, physically aware sizer."""
from lightning_modules.eda import agd, learnsize, sizers, transsizer  # noqa: F401

from lightning_modules.eda.agd import AGD
from lightning_modules.eda.learnsize import LearnSize
from lightning_modules.eda.sizers import TILOS, LagrangianRelaxation, RandomSearch, STAGradient
from lightning_modules.eda.transsizer import TransSizer
__all__ = ["AGD", "LearnSize", "TILOS", "LagrangianRelaxation", "RandomSearch", "STAGradient", "TransSizer"]
