import json

import pytest

from vitforge.hw.gemm.config import GemmConfig


def test_defaults_hold_deit_tiny_fc2():
    config = GemmConfig()
    assert (config.rows, config.cols, config.k_max) == (16, 16, 768)
    assert config.acc_bound == 768 * 128 * 128
    assert config.required_acc_width == 25


@pytest.mark.parametrize("name", ["rows", "cols", "k_max", "a_depth", "b_depth", "c_depth",
                                  "param_depth", "acc_width"])
@pytest.mark.parametrize("value", [0, -3])
def test_sizes_must_be_positive(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be a positive integer, not {value}$"):
        GemmConfig(**{name: value})


@pytest.mark.parametrize("value", [2.0, "4", True, None])
def test_sizes_must_be_integers(value):
    with pytest.raises(TypeError, match=rf"^rows must be an integer, not {value!r}$"):
        GemmConfig(rows=value)


def test_accumulator_must_hold_the_bound():
    with pytest.raises(ValueError, match=r"^acc_width must be at least 25 to hold "
                                         r"k_max \* 128 \* 128 = 12582912, not 24$"):
        GemmConfig(acc_width=24)
    assert GemmConfig(acc_width=25).acc_width == 25
    assert GemmConfig(k_max=1, acc_width=16).required_acc_width == 16


def test_accumulator_is_at_most_int32():
    with pytest.raises(ValueError, match=r"^acc_width must be at most 32, not 33$"):
        GemmConfig(acc_width=33)
    deep = dict(a_depth=1 << 17, b_depth=1 << 17)
    assert GemmConfig(k_max=(1 << 17) - 1, **deep).required_acc_width == 32
    with pytest.raises(ValueError, match=r"^acc_width must be at least 33 to hold"):
        GemmConfig(k_max=1 << 17, **deep)


@pytest.mark.parametrize("depth_name", ["a_depth", "b_depth"])
def test_k_max_must_fit_the_operand_buffers(depth_name):
    with pytest.raises(ValueError, match=rf"^k_max must be at most {depth_name}=512, the "
                                         rf"deepest tile that buffer holds, not 768$"):
        GemmConfig(**{depth_name: 512})


def test_json_round_trip_and_unknown_keys():
    config = GemmConfig(rows=3, cols=5, k_max=40)
    assert GemmConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match=r"^GEMM config has unknown key 'colums'; known keys"):
        GemmConfig.from_dict({"rows": 2, "colums": 3})
    with pytest.raises(TypeError, match=r"^GEMM config must be a mapping, not \[1\]$"):
        GemmConfig.from_dict([1])


def test_config_is_frozen_and_keyword_only():
    with pytest.raises(TypeError):
        GemmConfig(4, 4)
    with pytest.raises(AttributeError):
        GemmConfig().rows = 8
