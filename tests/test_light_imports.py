"""Loading and validating a config is cheap: it imports neither torch, Ray nor Optuna, and one cache folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "ray", "optuna", "stable_baselines3")


def _imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_config_module_imports_no_heavy_library():
    assert _imported_after("import hwsearch.search.engine.config") == []


def test_validating_every_shipped_config_imports_no_heavy_library():
    code = ("from pathlib import Path\nfrom hwsearch.search.engine.config import load_config\n"
            "for p in sorted(Path('configs').glob('*.yaml')): load_config(p)\n"
            "from hwsearch.search.engine import evaluators, metrics, searchers\n"
            "assert {'random', 'optuna', 'evolution', 'amc', 'haq', 'naas'} <= set(searchers.names())\n"
            "assert {'train', 'supernet', 'compression', 'naas'} <= set(evaluators.names())\n"
            "assert {'netspec', 'accelerator', 'device'} <= set(metrics.names())")
    assert _imported_after(code) == []


def test_an_empty_cache_variable_means_the_default_cache_everywhere(monkeypatch, tmp_path):
    from hwsearch.cache import cache_root
    from hwsearch.estimators import measured
    from hwsearch.search.amc import trained_cache
    from hwsearch.spaces.supernet import cache

    default = Path.home() / ".cache" / "hwsearch"
    monkeypatch.setenv("HWSEARCH_CACHE", "")
    assert cache_root() == measured.cache_root() == trained_cache.cache_dir() == cache.cache_dir() == default
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path))
    assert cache_root() == measured.cache_root() == trained_cache.cache_dir() == cache.cache_dir() == tmp_path
    monkeypatch.delenv("HWSEARCH_CACHE")
    assert cache_root() == default and cache_root(tmp_path / "x") == tmp_path / "x"


def test_an_unknown_name_lists_the_known_ones():
    import pytest

    from hwsearch.errors import UnknownName
    from hwsearch.registry import Registry

    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.register("a")(1)
    assert reg.names() == ["a", "b"] and reg.get("b") == 2 and "a" in reg
    with pytest.raises(UnknownName, match=r"unknown widget 'c'; known: a, b"):
        reg.get("c")
