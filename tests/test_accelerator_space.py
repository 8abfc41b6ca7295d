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
