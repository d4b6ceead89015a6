"""Time-series editing with diffusion (family `tsedit`): CocktailEdit and its baselines on one shared backbone.
Importing this package registers the models; `lightning_modules.tsedit.api` edits a user's own series."""
from lightning_modules.tsedit import cocktail_edit, cps, dps, no_control, overwrite, repaint  # noqa: F401
