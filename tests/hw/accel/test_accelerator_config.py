"""AcceleratorConfig: every depth must fit the instruction fields that address it."""

import pytest

from vitforge.errors import ConfigError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import ISA, Opcode


@pytest.mark.parametrize("name, opcode, field", [
    ("act_depth", Opcode.GEMM, "a_addr"), ("wgt_depth", Opcode.GEMM, "b_addr"),
    ("prm_depth", Opcode.GEMM, "p_addr"), ("lnp_depth", Opcode.LAYERNORM, "lnp_addr")])
def test_a_depth_ends_where_its_address_field_does(name, opcode, field):
    limit = 1 << ISA[opcode].fields[field].width
    AcceleratorConfig(**{name: limit, "k_max": 64})
    with pytest.raises(ConfigError, match=rf"^{name} must be at most {limit} \(what the "
                                          rf"instruction fields reach\), not {limit + 1}$"):
        AcceleratorConfig(**{name: limit + 1, "k_max": 64})


def test_k_max_fits_the_gemm_field_k():
    limit = (1 << ISA[Opcode.GEMM].fields["k"].width) - 1
    with pytest.raises(ConfigError, match=rf"^k_max must be at most {limit} \(what the "
                                          rf"instruction fields reach\), not {limit + 1}$"):
        AcceleratorConfig(k_max=limit + 1)
