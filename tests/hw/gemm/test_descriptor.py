import pytest

from vitforge.hw.gemm.config import GemmConfig
from vitforge.hw.gemm.descriptor import GemmDescriptor, descriptor_layout

CONFIG = GemmConfig(rows=4, cols=4, k_max=64, a_depth=256, b_depth=128, c_depth=64,
                    param_depth=32)
FIELDS = dict(a_addr=0, a_stride=10, b_addr=0, b_stride=10, c_addr=0, c_stride=12, p_addr=0,
              k=10, m_tiles=2, n=12)


def descriptor(**changes):
    return GemmDescriptor(**{**FIELDS, **changes})


def test_encode_places_every_field_at_its_layout_offset():
    d = descriptor(a_addr=3, b_addr=5, c_addr=7, p_addr=1, n=9)
    word = d.encode(CONFIG)
    for name, field in descriptor_layout(CONFIG):
        assert (word >> field.offset) & ((1 << field.width) - 1) == getattr(d, name), name


def test_n_tiles_rounds_up():
    assert descriptor(n=12).n_tiles(CONFIG) == 3
    assert descriptor(n=13).n_tiles(CONFIG) == 4


@pytest.mark.parametrize("name", ["k", "m_tiles", "n"])
def test_counts_must_be_positive(name):
    with pytest.raises(ValueError, match=rf"^descriptor field {name} must be positive, not 0$"):
        descriptor(**{name: 0})


def test_fields_must_be_non_negative_integers():
    with pytest.raises(ValueError, match=r"^descriptor field a_addr must be non-negative, "
                                         r"not -1$"):
        descriptor(a_addr=-1)
    with pytest.raises(TypeError, match=r"^descriptor field k must be an integer, not 2.5$"):
        descriptor(k=2.5)


def test_k_beyond_k_max_is_rejected():
    with pytest.raises(ValueError, match=r"^descriptor field k must be at most k_max=64, "
                                         r"not 65$"):
        descriptor(k=65, a_stride=65, b_stride=65).check(CONFIG)


@pytest.mark.parametrize("changes, message", [
    (dict(a_addr=240), r"^GEMM command reads or writes A buffer words 240\.\.259, "
                       r"beyond a_depth=256$"),
    (dict(b_addr=100), r"^GEMM command reads or writes B buffer words 100\.\.129, "
                       r"beyond b_depth=128$"),
    (dict(c_addr=50), r"^GEMM command reads or writes C buffer words 50\.\.73, "
                      r"beyond c_depth=64$"),
    (dict(p_addr=21), r"^GEMM command reads or writes parameter buffer words 21\.\.32, "
                      r"beyond param_depth=32$"),
])
def test_accesses_beyond_a_buffer_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        descriptor(**changes).encode(CONFIG)
