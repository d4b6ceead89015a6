"""The contract every registered model and dataset keeps, checked for each entry the moment it is registered:

- a dataset constructs with its defaults (no file is read before `prepare_data`/`setup`);
- each family has a tiny synthetic variant, and what it fills in for models (`model_kwargs()`) is taken by the
  constructor of every model of the family;
- a model's search-space keys are constructor arguments (they reach `save_hyperparameters`);
- a model constructs with its defaults and the data-filled arguments;
- a training step runs on the family's synthetic variant at tiny shapes, and the checkpoint of that run loads
  (`load_from_checkpoint`: saved hyperparameters + state dict) into a model that gives identical outputs.
"""
from __future__ import annotations

import inspect

import lightning.pytorch as pl
import optuna
import pytest
import torch

import datamodules  # noqa: F401  (fills the registries)
import lightning_modules  # noqa: F401
from contracts.batch import ctr as CTR
from contracts.batch import retrieval as RETRIEVAL
from contracts.batch import tsedit as TSEDIT
from contracts.registry import DATASETS, MODELS
from lightning_modules.distill.base import DistillModule
from tests.conftest import fast_trainer

# Per family: the synthetic (or simulated) dataset with tiny sizes, and tiny model sizes (each applied only where
# the model's constructor takes it).
FAMILIES = {
    "seqrec": ("synthetic-seqrec",
               dict(num_users=64, num_items=40, min_length=4, max_length=10, max_len=8, batch_size=32,
                    eval_batch_size=64),
               dict(embed_dim=8, num_blocks=1, num_heads=1, qk_dim=8, v_dim=8, num_negatives=4, dupe_factor=1,
                    num_time_buckets=8)),
    "ctr": ("synthetic-ctr",
            dict(rows=400, num_dense=3, num_sparse=4, max_vocab=20, cross_pairs=1, batch_size=64, eval_batch_size=256),
            dict(embed_dim=4, hidden_units=[8], cin_layer_units=[4, 4], mlp1_hidden_units=[8], mlp2_hidden_units=[8],
                 fs_hidden_units=[8], num_heads=1, attention_dim=4, num_layers=1, num_cross_layers=1,
                 num_dense_cross_layers=1, product_size=4)),
    "dtr": ("icu-sepsis",
            dict(num_patients=100, text_encoder="tfidf", tfidf_dim=8, max_steps=30, batch_size=64),
            dict(d_model=8, num_heads=1, num_layers=1, ffn_dim=8, hidden_dim=8, embed_dim=8, stage1_epochs=1,
                 refine_epochs=1, finetune_epochs=1, conformal_repetitions=2)),
    "distill": ("distill-synthetic",
                dict(num_users=40, num_items=30, min_length=4, max_length=10, max_len=8, num_negatives=10,
                     batch_size=20),
                dict(synthetic_users=2, synthetic_len=5, inner_steps=1, window=1, inner_batch=2, pretrain_epochs=1,
                     trajectory_epochs=(1, 1), targets=("sasrec",),
                     target_args={"sasrec": {"embed_dim": 8, "num_blocks": 1, "num_heads": 1}},
                     learner_args={"embed_dim": 8, "num_blocks": 1, "num_heads": 1}, target_steps=1,
                     reference_max_epochs=1, reference_patience=1, min_prefix=2, user_rank=2, time_rank=2,
                     latent_dim=4)),
    "marl": ("mpe-simple-spread",
             dict(scenario_args={"N": 2, "max_cycles": 4}, num_envs=2, rollouts_per_epoch=1, eval_episodes=2),
             dict(hidden_dim=8, attention_dim=8, num_heads=1, buffer_size=16, batch_size=2, ppo_epochs=1,
                  mixing_embed_dim=4, hypernet_dim=4, role_dim=2)),
    "retrieval": ("synthetic-retrieval",
                  dict(num_users=60, num_groups=3, subgroups=2, items_per_subgroup=3, max_len=6, batch_size=32),
                  dict(embed_dim=8, tower_layers=1, num_negatives=4, num_hard=2, hard_pool=6, hard_skip=1,
                       mixgcf_candidates=2, mixgcf_synthetic=1, m_c=1, m_o=2, num_primary=2, num_secondary=2)),
    "tsedit": ("synthetic-tsedit",
               dict(num_train=64, num_val=16, num_test=16, window=16, segment_length=(4, 6), num_val_tasks=4,
                    num_test_tasks=4, batch_size=16, eval_batch_size=16),
               dict(hidden_dim=8, num_blocks=1, diffusion_steps=10, sampling_steps=2, disc_steps=2,
                    share_backbone=False)),
    "mllmrec": ("mllm-synthetic",
                dict(num_users=60, num_items=30, num_topics=3, min_length=4, max_length=8, max_history=6,
                     num_eval_negatives=5, batch_size=16),
                dict(embed_dim=8, hidden_dim=8, num_blocks=1, num_heads=1, num_experts=2)),
    "rerank": ("synthetic-rerank",
               dict(num_users=40, num_items=40, num_genres=4, sequence_len=10, num_candidates=10, history_len=4,
                    ranker_epochs=1, batch_size=16, eval_batch_size=16),
               dict(d_model=8, num_blocks=1, num_heads=1, hidden_dim=8, eval_k=5)),
    "imitation": ("synthetic-microgrid",
                  dict(days=15, episodes_per_operator=2, batch_size=8, eval_batch_size=16, rollout_envs=2, horizon=6),
                  dict(hidden_dim=8, d_model=8, num_heads=1, num_layers=1, window=3, latent_dim=2, bc_epochs=1,
                       simulator_steps=1, ppo_epochs=1)),
    "eda": ("synthetic-gatesize", dict(num_gates=20, variants_per_circuit=2, reference_iters=2),
            dict(d_model=8, num_heads=1, num_layers=1, hidden_dim=8, cnn_channels=2, scales=(4,), size_iterations=2,
                 iterations=2, outer_iterations=2, inner_steps=1, samples=2, max_iters=2, greedy_iters=2,
                 r2_variants=1, check_every=1)),
}


def accepted(cls) -> set[str]:
    """The keyword arguments a class's constructor takes, following `**kwargs` up the base classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__ or klass in (pl.LightningModule, pl.LightningDataModule, object):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def tiny(entry) -> dict:
    """The family's tiny sizes that the model takes, except what a registered variant fixes."""
    takes = accepted(entry.cls) - set(entry.arguments)
    return {k: v for k, v in FAMILIES[entry.family][2].items() if k in takes}


_DATA: dict = {}


def data(family: str):
    """The family's tiny synthetic datamodule, set up once per session."""
    if family not in _DATA:
        name, kwargs, _ = FAMILIES[family]
        pl.seed_everything(0, verbose=False)
        dm = DATASETS.get(name).cls(**kwargs)
        dm.prepare_data()
        dm.setup("fit")
        _DATA[family] = dm
    return _DATA[family]


def search_space_sample(cls) -> dict:
    return cls.search_space(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())


# ----- datasets -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_constructs_with_its_defaults(name):
    dm = DATASETS.get(name).cls()
    assert dm.family in FAMILIES, f"family {dm.family!r} has no tiny synthetic variant in {__name__}.FAMILIES"


def test_every_family_has_a_tiny_synthetic_variant_of_its_own():
    families = {e.family for e in MODELS.entries()} | {e.family for e in DATASETS.entries()}
    assert families == set(FAMILIES)
    for family, (name, _, _) in FAMILIES.items():
        assert DATASETS.get(name).family == family


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_what_the_data_fills_in_is_taken_by_every_model_of_the_family(family):
    filled = set(data(family).model_kwargs())
    for name in MODELS.names(family=family):
        missing = filled - accepted(MODELS.get(name).cls)
        assert not missing, f"{name} does not take {sorted(missing)} from its datamodule"


# ----- models ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS.names())
def test_search_space_keys_are_constructor_arguments(name):
    entry = MODELS.get(name)
    sampled = search_space_sample(entry.cls)
    unknown = set(sampled) - accepted(entry.cls)
    assert not unknown, f"{name}: search-space keys {sorted(unknown)} are not constructor arguments"
    model = entry.build(**data(entry.family).model_kwargs(), **sampled)
    assert set(sampled) <= set(model.hparams), f"{name}: {sorted(set(sampled) - set(model.hparams))} not saved"


@pytest.mark.parametrize("name", MODELS.names())
def test_defaults_construct_with_the_data_filled_arguments(name):
    entry = MODELS.get(name)
    model = entry.build(**data(entry.family).model_kwargs())
    assert isinstance(model, pl.LightningModule)
    assert set(data(entry.family).model_kwargs()) <= set(model.hparams), "data-filled arguments must be saved"


def probe(model, family: str, dm) -> dict[str, torch.Tensor]:
    """Outputs of the model on fixed inputs (eval mode, fixed seed), to compare two models with."""
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = {f"state/{k}": v for k, v in model.state_dict().items()}
        if family == "seqrec":
            out["scores"] = model.score_all(dm.val_set.__getitems__(list(range(4))))
        elif family == "distill" and type(model).summary_distributions is not DistillModule.summary_distributions:
            out["summary"] = model.summary_distributions(torch.arange(model.num_summary_users))[0]
        elif family == "ctr":
            batch = dm.train_set.__getitems__(list(range(8)))
            out["logits"] = model(batch[CTR.DENSE], batch[CTR.SPARSE])
        elif family == "dtr":
            out["logits"] = model(dm.val_set.__getitems__(list(range(8))))["logits"]
        elif family == "marl":
            obs = torch.randn(2, model.num_agents, model.obs_dim)
            out["actions"] = model.act(obs, 0, model.reset_policy_state(2, model.num_agents), explore=False)[0]
        elif family == "retrieval":
            out["scores"] = model(dm.val_set.__getitems__(list(range(4)))[RETRIEVAL.HISTORY])
        elif family == "imitation":  # greedy episodes in the environment (a foresight oracle acts only there)
            from datamodules.imitation.operators import play

            out["actions"] = play(dm.make_env(), model, dm.starts["test"][:2], explore=False)["actions"]
        elif family == "rerank":
            batch = dm.val_set.__getitems__(list(range(4)))
            out["order"] = model.rerank(batch)
            if hasattr(model, "score"):
                out["scores"] = model.score(batch)
        elif family == "mllmrec":
            out["scores"] = model.score(dm.val_set.__getitems__(list(range(4))))
        elif family == "eda":
            with torch.enable_grad():
                out["sizes"] = model.size(dm.circuits[dm.splits["test"][0]])
        elif family == "tsedit":
            batch = dm.train_set.__getitems__(list(range(4)))
            out["eps"] = model.eps(batch[TSEDIT.X], 1, batch[TSEDIT.ATTR])
    return out


@pytest.mark.parametrize("name", MODELS.names())
def test_a_training_step_runs_and_its_checkpoint_round_trips(name, tmp_path):
    entry = MODELS.get(name)
    if getattr(entry.cls, "needs_llm", False):
        pytest.skip(f"{name} needs a language model; its family's tests run it against a tiny random one")
    dm = data(entry.family)
    pl.seed_everything(0, verbose=False)
    model = entry.build(**dm.model_kwargs(), **tiny(entry))
    trainer = fast_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished and trainer.current_epoch == 1
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = entry.cls.load_from_checkpoint(path, weights_only=True)
    assert dict(loaded.hparams) == dict(model.hparams)
    before, after = probe(model, entry.family, dm), probe(loaded, entry.family, dm)
    assert before.keys() == after.keys()
    assert entry.family == "distill" or len(before) > len(model.state_dict()), "the probe compares outputs too"
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=f"{name}: {key} differs")

