"""Sequential recommenders (family `seqrec`). Importing this package registers its models."""
from lightning_modules.seqrec import gru4rec, pop, sasrec  # noqa: F401
from lightning_modules.seqrec import bert4rec, fuxi_alpha, gpt_rec, hstu, llama_rec  # noqa: F401
from lightning_modules.seqrec import fdsa, heterrec  # noqa: F401

# the public names: `from lightning_modules.seqrec import BERT4Rec`
from lightning_modules.seqrec.bert4rec import BERT4Rec
from lightning_modules.seqrec.fdsa import FDSA
from lightning_modules.seqrec.fuxi_alpha import FuXiAlpha
from lightning_modules.seqrec.gpt_rec import GPTRec
from lightning_modules.seqrec.gru4rec import GRU4Rec
from lightning_modules.seqrec.heterrec import HeterRec
from lightning_modules.seqrec.hstu import HSTU
from lightning_modules.seqrec.llama_rec import LlamaRec
from lightning_modules.seqrec.pop import Popularity
from lightning_modules.seqrec.sasrec import SASRec
__all__ = ["BERT4Rec", "FDSA", "FuXiAlpha", "GPTRec", "GRU4Rec", "HSTU", "HeterRec", "LlamaRec", "Popularity",
           "SASRec"]
