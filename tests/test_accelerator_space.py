"""The accelerator design space: valid hardware from every choice, NAAS encoding, area/power limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsearch.errors import ConfigError, SpecError
from hwsearch.hwmodel import Accelerator, preset_names
from hwsearch.spaces.accelerator import CATEGORICAL, AcceleratorSpace, accelerator_space

SPACE = AcceleratorSpace()


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_every_sampled_choice_is_a_valid_accelerator_whose_vector_decodes_back(seed):
    rng = np.random.default_rng(seed)
    choice = SPACE.sample(rng)
    accel = SPACE.to_accelerator(choice)
    assert accel.num_pes == choice["pe_rows"] * choice["pe_cols"]
    assert accel.glb_bytes == choice["glb_kib"] * 1024
    assert SPACE.from_vector(SPACE.to_vector(choice)) == choice
    assert SPACE.decode(SPACE.encode(choice)) == choice


@given(st.lists(st.floats(-3, 3), min_size=SPACE.vector_size, max_size=SPACE.vector_size))
@settings(max_examples=50, deadline=None)
def test_any_real_vector_decodes_to_a_choice_of_the_space(x):
    choice = SPACE.from_vector(np.array(x))
    assert SPACE.validate(choice) == choice


def test_categorical_genes_decode_to_the_option_with_the_highest_importance():
    x = SPACE.to_vector(SPACE.reference("smallest"))
    sl = SPACE.gene_slices()["dataflow"]
    x[sl] = [0.1, 0.2, 0.9, 0.3]
    assert SPACE.from_vector(x)["dataflow"] == SPACE.dims[SPACE.dim_names.index("dataflow")].options[2]
    assert set(CATEGORICAL) <= set(SPACE.dim_names)


def test_small_steps_move_an_ordered_gene_to_a_neighbouring_option_only():
    c = SPACE.reference("smallest") | {"pe_rows": 16}
    x = SPACE.to_vector(c)
    opts = SPACE.dims[SPACE.dim_names.index("pe_rows")].options
    x[SPACE.gene_slices()["pe_rows"].start] += 1.0 / (len(opts) - 1)
    assert SPACE.from_vector(x)["pe_rows"] == opts[opts.index(16) + 1]


def test_feasible_samples_respect_area_and_power_limits():
    space = AcceleratorSpace(max_area_mm2=1.0, max_power_w=1.0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = space.to_accelerator(space.sample_feasible(rng))
        assert a.area_mm2 <= 1.0 and a.peak_power_w <= 1.0
    assert space.violations(space.reference("largest"))


def test_impossible_limits_give_an_actionable_error():
    space = AcceleratorSpace(max_area_mm2=1e-6)
    with pytest.raises(ConfigError, match="max_area_mm2"):
        space.sample_feasible(np.random.default_rng(0), tries=20)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_has_a_nearest_design_in_the_space(name):
    accel = Accelerator.preset(name)
    choice = SPACE.nearest(accel)
    near = SPACE.to_accelerator(choice)
    assert near.dataflow == accel.dataflow or accel.dataflow not in SPACE.dims[SPACE.dim_names.index("dataflow")].options
    assert near.native_bits == accel.native_bits


def test_the_space_is_hardware_not_a_network():
    with pytest.raises(SpecError, match="to_accelerator"):
        SPACE.to_netspec(SPACE.reference("smallest"))
    with pytest.raises(SpecError):
        SPACE.build(SPACE.reference("smallest"))


def test_bad_options_are_config_errors_naming_the_field():
    with pytest.raises(ConfigError, match="precision set"):
        AcceleratorSpace(genes={"precisions": ["3-8"]})
    with pytest.raises(ConfigError, match="unknown"):
        accelerator_space({"pe_count": 4})
    with pytest.raises(ConfigError, match="max_power_w"):
        AcceleratorSpace(max_power_w=-1)
    with pytest.raises(ConfigError, match="gene 'colour'"):
        AcceleratorSpace(genes={"colour": [1]})


# What `NaasEvolution` proposed (two generations of six, seed 5) and `sample_feasible` drew (seed 11)
# before the sparsity genes existed: fingerprints of the accelerators, recorded on the code of then.
BEFORE_SPARSE_OPTIONS = ["955cbd23807d1ba5", "5124a77af09a64d3", "72b4933575a9d238", "17bb6252643a9f91",
                         "990ce2cdc1711ab5", "29bc6e5a927630e8", "2eef7c1bacb95c60", "107fad3da481e000",
                         "2ec9b31f5da96469", "4e9e12d5c01e4b21", "bfdebcd233321492", "df2fd763764cacd4",
                         "3bf93baa79f93403", "26b568514d762da5", "4aaea60b2853e747", "b4ae55ebf66b3661"]


def _designs(space: AcceleratorSpace, sparse_options: bool) -> list[str]:
    from hwsearch.search.naas.evolution import NaasEvolution
    from hwsearch.search.naas.settings import NaasSettings

    s = NaasSettings(population=6, generations=2, sparse_options=sparse_options)
    evo = NaasEvolution(space, s.outer(), seed=5)
    keys = []
    for g in range(2):
        ids = [f"t{g}_{i}" for i in range(6)]
        keys += [space.to_accelerator(evo.ask(t)["accel"]).key for t in ids]
        for t in ids:
            a = space.to_accelerator(evo.proposals[t]["accel"])
            evo.tell(t, -a.area_mm2 + 0.01 * a.pe_rows)
    rng = np.random.default_rng(11)
    return keys + [space.to_accelerator(space.sample_feasible(rng)).key for _ in range(4)]


def test_without_sparse_options_the_naas_space_proposes_what_it_did_before():
    from hwsearch.search.naas.settings import NaasSettings

    settings = NaasSettings()
    assert settings.sparse_options is False
    space = settings.space()
    assert [d.name for d in space.dims] == [d.name for d in SPACE.dims] and space.vector_size == 17
    assert _designs(space, False) == BEFORE_SPARSE_OPTIONS


def test_with_sparse_options_the_support_is_searched_and_every_design_is_a_valid_accelerator():
    from hwsearch.search.naas.settings import NaasSettings

    space = NaasSettings(sparse_options=True).space()
    assert {"sparse_attention", "vector_sparsity", "vector_length"} <= {d.name for d in space.dims}
    assert space.vector_size == 17 + 2 + 4 + 1
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        choice = space.sample(rng)
        accel = space.to_accelerator(choice)
        assert Accelerator.from_dict(accel.to_dict()) == accel
        assert accel.sparse_attention == choice["sparse_attention"]
        assert accel.vector_sparsity == choice["vector_sparsity"]
        assert accel.vector_length == (0 if choice["vector_sparsity"] == "none" else choice["vector_length"])
        assert space.from_vector(space.to_vector(choice)) == choice
        seen.add((accel.sparse_attention, accel.vector_sparsity))
    assert {a for a, _ in seen} == {False, True} and {v for _, v in seen} == {"none", "row", "col", "both"}
    # A declaring preset seeds the population with its support, and that support costs area.
    sparse = Accelerator.preset("edge-sparse")
    near = space.nearest(sparse)
    assert (near["sparse_attention"], near["vector_sparsity"], near["vector_length"]) == (True, "both", 2)
    plain = {**near, "sparse_attention": False, "vector_sparsity": "none"}
    assert space.to_accelerator(near).area_mm2 > space.to_accelerator(plain).area_mm2
    assert len(set(_designs(space, True))) > 1  # the evolution runs over the larger space


def test_sparse_options_is_a_validated_naas_setting_and_its_genes_need_it():
    from pydantic import ValidationError

    from hwsearch.search.naas.settings import NaasSettings

    with pytest.raises(ValidationError, match="sparse_options"):
        NaasSettings(sparse_options="yes")
    with pytest.raises(ConfigError, match="only with sparse_options"):
        accelerator_space({"genes": {"sparse_attention": [True]}})
    with pytest.raises(ConfigError, match="searcher.settings.sparse_options"):
        accelerator_space({"sparse_options": True})
    with pytest.raises(ConfigError, match="vector_length"):
        accelerator_space({"genes": {"vector_length": [0, 4]}}, sparse_options=True)
    only = accelerator_space({"genes": {"sparse_attention": [True], "vector_sparsity": ["row"]}}, sparse_options=True)
    assert only.to_accelerator(only.sample(np.random.default_rng(1))).sparse_attention
