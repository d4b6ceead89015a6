"""LightningCLI for any registered model on any dataset of its family: `paperboard fit|validate|test`.

    paperboard fit --model SASRec --data synthetic-seqrec --model.embed_dim 32 --trainer.max_epochs 5
    python -m benchmarks.cli_lightning fit --model sasrec --data ml-100k --data.data_dir ../shared/data
    paperboard fit --config my.yaml            # `paperboard fit --model SASRec --data ml-100k --print_config`

`--model` and `--data` take a registered name (`sasrec`), a class name (`SASRec`) or an import path
(`lightning_modules.seqrec.SASRec`); a registered variant (`cord_flat`) is its class with the variant's arguments
as defaults. Everything after them is LightningCLI's own syntax: `--model.KEY`, `--data.KEY`, `--trainer.KEY`,
`--config`, `--print_config`, `--seed_everything`. What a model needs from the data (num_items, field_dims, ...) is
linked from the datamodule once per family (FAMILY_LINKS), so it is never typed twice; linked keys are not
options. This trains outside the results store: a board run (`paperboard run`) is what records results.
"""
from __future__ import annotations

import importlib
import inspect
import sys

from benchmarks.boards import ConfigError

# What each family's datamodule hands its models (`datamodule.model_kwargs()`), linked into the model's constructor
# wherever the model takes that argument.
FAMILY_LINKS: dict[str, tuple[str, ...]] = {
    "seqrec": ("num_items", "max_len"),
    "distill": ("num_items", "max_len"),
    "retrieval": ("num_items", "num_attributes", "text_dim", "behaviour_dim", "max_len"),
    "ctr": ("field_dims", "num_dense"),
    "dtr": ("vitals_dim", "meds_dim", "notes_dim", "demo_dim", "history_len", "num_actions", "mdp"),
    "marl": ("obs_dim", "n_actions", "num_agents", "episode_limit"),
    "tsedit": ("channels", "window", "num_classes", "channel_mean", "channel_std", "channel_names", "data_hash"),
}
SUBCOMMANDS = ("fit", "validate", "test", "predict")
USAGE = ("usage: paperboard {fit,validate,test,predict} --model MODEL --data DATASET [--model.KEY V] [--data.KEY V] "
         "[--trainer.KEY V] [--config FILE]")


def resolve_class(kind: str, name: str):
    """(class, variant arguments, family) of a registered name, a class name or an import path."""
    from contracts.registry import load_index

    rows = load_index()["models" if kind == "model" else "datasets"]
    row = next((r for r in rows if name in (r["name"], r["import_path"], r["import_path"].rsplit(".", 1)[1])), None)
    if row is None and "." in name:  # an import path of a class outside the registry
        module, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr), {}, None
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"--{kind} {name}: cannot import it ({err})") from None
    if row is None:
        raise ConfigError(f"unknown {kind} {name!r}; give a registered name, a class name or an import path "
                          f"(see `paperboard list {kind if kind == 'model' else 'dataset'}s`)")
    import datamodules  # noqa: F401  (fills the registries)
    import lightning_modules  # noqa: F401
    from contracts.registry import DATASETS, MODELS

    entry = (MODELS if kind == "model" else DATASETS).get(row["name"])
    return entry.cls, dict(entry.arguments), entry.family


def _from_data(datamodule, key: str):
    """One value the datamodule gives its models (prepared and set up once, on first use)."""
    if not getattr(datamodule, "_paperboard_prepared", False):
        datamodule.prepare_data()
        datamodule._paperboard_prepared = True
    return datamodule.model_kwargs()[key]


def make_cli_class():
    import functools

    from lightning.pytorch.cli import LightningCLI

    class PaperboardCLI(LightningCLI):
        """LightningCLI with the family's data-to-model links and a variant's arguments as model defaults."""

        def __init__(self, *args, links: tuple[str, ...] = (), model_defaults: dict | None = None, **kwargs):
            self.links, self.model_defaults = links, model_defaults or {}
            super().__init__(*args, **kwargs)

        def add_arguments_to_parser(self, parser) -> None:
            for key in self.links:
                parser.link_arguments("data", f"model.{key}", compute_fn=functools.partial(_from_data, key=key),
                                      apply_on="instantiate")
            if self.model_defaults:
                parser.set_defaults({f"model.{k}": v for k, v in self.model_defaults.items()})

    return PaperboardCLI


def split_choice(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """Take `--model NAME` / `--model=NAME` out of argv (a `--model.KEY` option stays)."""
    rest, value, i = [], None, 0
    while i < len(argv):
        token = argv[i]
        if token == flag and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
            continue
        if token.startswith(flag + "="):
            value = token[len(flag) + 1:]
        else:
            rest.append(token)
        i += 1
    return value, rest


def _choices_from_config(argv: list[str]) -> dict:
    """`model:` and `data:` of a --config file given as names (`model: sasrec`) or as `class_path`."""
    import yaml

    out = {}
    for i, token in enumerate(argv):
        path = argv[i + 1] if token == "--config" and i + 1 < len(argv) else \
            token.split("=", 1)[1] if token.startswith("--config=") else None
        if path:
            with open(path) as f:
                config = yaml.safe_load(f) or {}
            for key in ("model", "data"):
                value = config.get(key)
                if isinstance(value, str):
                    out[key] = value
                elif isinstance(value, dict) and "class_path" in value:
                    out[key] = value["class_path"]
    return out


def build(argv: list[str], run: bool = True):
    """The LightningCLI for argv (`fit --model M --data D ...`); with run=False it only parses and instantiates."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__)
        raise SystemExit(0)
    model_name, rest = split_choice(argv, "--model")
    data_name, rest = split_choice(rest, "--data")
    configured = _choices_from_config(rest)
    model_name, data_name = model_name or configured.get("model"), data_name or configured.get("data")
    if (not model_name or not data_name) and ("-h" in rest or "--help" in rest):
        print(USAGE + "\n\n" + __doc__)
        raise SystemExit(0)
    if not model_name or not data_name:
        raise ConfigError(f"name a model and a dataset: --model NAME --data NAME ({USAGE})")
    model_cls, model_defaults, model_family = resolve_class("model", model_name)
    data_cls, _, data_family = resolve_class("data", data_name)
    if model_family and data_family and model_family != data_family:
        raise ConfigError(f"model {model_name} ({model_family}) cannot train on {data_name} ({data_family}); pick a "
                          f"dataset of its family (`paperboard list datasets`)")
    family = model_family or data_family
    takes = set(inspect.signature(model_cls.__init__).parameters)
    links = tuple(k for k in FAMILY_LINKS.get(family, ()) if k in takes)
    # a config file's `model:`/`data:` name was read above; LightningCLI gets the keys under them only
    rest = _strip_config_choices(rest)
    return make_cli_class()(model_cls, data_cls, args=rest if run else rest[1:], run=run, links=links,
                            model_defaults={k: v for k, v in model_defaults.items() if k in takes},
                            save_config_kwargs={"overwrite": True})


def _strip_config_choices(argv: list[str]) -> list[str]:
    """Rewrite each --config file whose `model:`/`data:` is a name or class_path into one holding only their
    `init_args` (LightningCLI with a fixed class reads the keys directly)."""
    import tempfile

    import yaml

    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        path = argv[i + 1] if token == "--config" and i + 1 < len(argv) else \
            token.split("=", 1)[1] if token.startswith("--config=") else None
        if path is None:
            out.append(token)
            i += 1
            continue
        with open(path) as f:
            config = yaml.safe_load(f) or {}
        for key in ("model", "data"):
            value = config.get(key)
            if isinstance(value, str):
                config.pop(key)
            elif isinstance(value, dict) and "class_path" in value:
                config[key] = value.get("init_args") or {}
        handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, prefix="paperboard-cli-")
        with handle:
            yaml.safe_dump(config, handle)
        out += ["--config", handle.name]
        i += 2 if token == "--config" else 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        print(f"paperboard: error: the first word is one of {', '.join(SUBCOMMANDS)}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        build(argv)
    except ConfigError as err:
        print(f"paperboard: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
