"""Time-series editing with diffusion (family `tsedit`): CocktailEdit and its baselines on one shared backbone.
Importing this package registers the models; `lightning_modules.tsedit.api` edits a user's own series."""
from lightning_modules.tsedit import cocktail_edit, cps, dps, no_control, overwrite, repaint  # noqa: F401

# the public names: `from lightning_modules.tsedit import CocktailEdit`
from lightning_modules.tsedit.cocktail_edit import CocktailEdit, CocktailEditRegressor
from lightning_modules.tsedit.cps import ConstrainedPosteriorSampling
from lightning_modules.tsedit.dps import DPS
from lightning_modules.tsedit.no_control import NoControl
from lightning_modules.tsedit.overwrite import Overwrite
from lightning_modules.tsedit.repaint import RePaint
__all__ = ["CocktailEdit", "CocktailEditRegressor", "ConstrainedPosteriorSampling", "DPS", "NoControl", "Overwrite",
           "RePaint"]
