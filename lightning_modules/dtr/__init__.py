"""The dtr family: dynamic treatment recommendation (SAFER and its baselines) on patient trajectories."""
from lightning_modules.dtr import acil, bc_mlp, cql, lstm, retain, safer, srl_rnn  # noqa: F401  (registers the models)

# the public names: `from lightning_modules.dtr import BCMLP`
from lightning_modules.dtr.acil import ACIL
from lightning_modules.dtr.bc_mlp import BCMLP
from lightning_modules.dtr.cql import DiscreteCQL
from lightning_modules.dtr.lstm import LSTMRecommender
from lightning_modules.dtr.retain import RETAIN
from lightning_modules.dtr.safer import SAFER
from lightning_modules.dtr.srl_rnn import SRLRNN
__all__ = ["ACIL", "BCMLP", "DiscreteCQL", "LSTMRecommender", "RETAIN", "SAFER", "SRLRNN"]
