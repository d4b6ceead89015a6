"""Install extras by family (pyproject.toml): every third-party package a family imports is in the base dependencies
or in that family's extra, the rest of the house needs only the base, and with no extra installed every family
still imports (its extra packages are imported where they are used), so a CTR user needs no mpe2 or
sentence-transformers."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "lightning_modules", "datamodules", "benchmarks", "sweeps")


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    """Normalised distribution names of requirement strings; `paperboard[a,b]` expands to those extras."""
    extras = project()["optional-dependencies"]
    out: set[str] = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)(\[([^\]]*)\])?", requirement)
        name = match.group(1).lower().replace("_", "-")
        if name == "paperboard":
            for extra in match.group(3).split(","):
                out |= names(extras[extra.strip()])
        else:
            out.add(name)
    return out


def third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else []
        found |= {m.split(".")[0] for m in modules}
    return {m for m in found if m not in sys.stdlib_module_names and m not in PACKAGES}


def test_every_family_extra_exists_and_dev_installs_all():
    extras = project()["optional-dependencies"]
    families = {p.name for p in (ROOT / "lightning_modules").iterdir() if (p / "__init__.py").exists()}
    assert families <= set(extras), f"families without an extra: {sorted(families - set(extras))}"
    assert names(extras["all"]) == set().union(*(names(extras[f]) for f in families))
    assert names(extras["all"]) <= names(extras["dev"])


def test_each_family_imports_only_the_base_and_its_extra():
    dist_of = {module: {d.lower().replace("_", "-") for d in dists}
               for module, dists in packages_distributions().items()}
    base = names(project()["dependencies"])
    extras = project()["optional-dependencies"]
    wrong = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            family = parts[1] if package in ("lightning_modules", "datamodules") and len(parts) > 2 else None
            if len(parts) == 2 and path.stem in extras:
                family = path.stem  # a shared module named after its own extra (datamodules/text.py)
            if parts[:2] == ("benchmarks", "perf") and path.stem.split("_")[0] in extras:
                family = path.stem.split("_")[0]  # a family's benchmark script may use that family's extra
            # the reference implementations a benchmark installs into a venv of its own, never a dependency
            allowed = base | (names(extras[family]) if family else set()) | {"deepctr-torch", "deepctr_torch"}
            for module in third_party_imports(path):
                dists = dist_of.get(module, {module})
                if not dists & allowed:
                    where = f"the base or the {family} extra" if family else "the base"
                    wrong.append(f"{path.relative_to(ROOT)} imports {module} ({', '.join(sorted(dists))}), "
                                 f"not in {where}")
    assert not wrong, "\n".join(wrong)


def test_every_family_imports_without_the_extras():
    """With every extra's packages missing, importing every model and dataset still works."""
    extras = project()["optional-dependencies"]
    dist_of = packages_distributions()
    # torchmetrics (base) imports transformers (and so its tokenizers) whenever it is installed: they stay importable
    blocked = sorted({module for module, dists in dist_of.items()
                      if {d.lower().replace("_", "-") for d in dists}
                      & (names(extras["all"]) - names(project()["dependencies"]))} - {"transformers", "tokenizers"})
    script = f"""
import importlib.abc, importlib.machinery, sys
BLOCKED = {blocked!r}
class NotInstalled(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # importing a blocked package fails as if it were not installed
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}} (an extra, blocked here)", name=spec.name)
sys.meta_path.insert(0, NotInstalled())
import datamodules, lightning_modules
from contracts.registry import DATASETS, MODELS
assert len(MODELS) and len(DATASETS)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pyarrow" in blocked and "mpe2" in blocked and "tensorly" in blocked
