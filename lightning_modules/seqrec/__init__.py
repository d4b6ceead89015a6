"""Sequential recommenders (family `seqrec`). Importing this package registers its models."""
from lightning_modules.seqrec import gru4rec, pop, sasrec  # noqa: F401
from lightning_modules.seqrec import bert4rec, fuxi_alpha, gpt_rec, hstu, llama_rec  # noqa: F401
