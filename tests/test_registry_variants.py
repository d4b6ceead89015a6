"""A registered variant is its base model built with fixed arguments: the one way to declare an ablation by name."""
import pytest

import lightning_modules  # noqa: F401
from contracts.registry import MODELS

VARIANTS = [e.name for e in MODELS.entries() if e.arguments]
DIMS = {"dtr": dict(vitals_dim=5, meds_dim=3, notes_dim=8, demo_dim=2),
        "marl": dict(obs_dim=6, n_actions=5, num_agents=3, episode_limit=10),
        "retrieval": dict(num_items=10),
        "imitation": dict(state_dim=6, action_dim=1, horizon=24),
        "eda": dict(num_families=8),
        "rerank": dict(num_users=4, num_items=30, num_genres=3, num_candidates=20, history_len=5)}


def test_the_paper_ablations_are_variants():
    assert {"safer_n", "safer_f", "safer_u", "cord_no_rc", "cord_no_rd", "cord_flat", "cord_reward"} <= set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_a_variant_builds_its_base_with_its_arguments(name):
    entry = MODELS.get(name)
    model = entry.build(**DIMS[entry.family])
    assert type(model) is entry.cls and entry.cls.registry_name != name
    assert {k: model.hparams[k] for k in entry.arguments} == entry.arguments


@pytest.mark.parametrize("name", VARIANTS)
def test_explicit_arguments_override_the_variants(name):
    entry = MODELS.get(name)
    base = MODELS.get(entry.cls.registry_name).build(**DIMS[entry.family]).hparams
    fixed = {k: v for k, v in entry.arguments.items() if base[k] != v}
    if not fixed:
        pytest.skip(f"{name} names its base's defaults (an alias): nothing to override")
    key, value = next(iter(fixed.items()))
    default = base[key]
    assert entry.build(**DIMS[entry.family], **{key: default}).hparams[key] == default != value


@pytest.mark.parametrize("name", [n for n in VARIANTS if "@" in n])
def test_a_board_row_named_after_a_registered_variant_gets_its_arguments(name):
    """A board row `base@x` that is itself a registered variant builds the variant, not the plain base."""
    from benchmarks.boards import board_names, load_board
    from benchmarks.runner import RunSpec, resolve

    entry = MODELS.get(name)
    board = next(b for b in map(load_board, board_names()) if name in b.models)
    _, _, build, kwargs = resolve(board, RunSpec(board=board.name, model=name, seed=0))
    model = build(**{**DIMS[entry.family], **kwargs})
    assert {k: model.hparams[k] for k in entry.arguments} == entry.arguments

