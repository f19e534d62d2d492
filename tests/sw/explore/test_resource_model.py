"""The resource model: block RAM tiling, fitting, the shipped coefficients, bad files."""

from dataclasses import replace

import pytest

from vitforge.boards.presets import PRESETS
from vitforge.errors import ConfigError
from vitforge.hw.gemm.config import accumulator_width
from vitforge.sw.explore.resource_model import (RESOURCES, ResourceModel, block_rams, fit,
                                                pe_count, rest_features)


@pytest.mark.parametrize("width, depth, expected", [
    (72, 512, 1.0), (9, 4096, 1.0), (36, 1024, 1.0), (8, 2048, 0.5), (8, 512, 0.0),
    (320, 17408, 153.0),         # 17 deep x 9 wide of 1024 x 36
    (64, 16384, 32.0),
])
def test_block_rams_take_the_cheapest_aspect_ratio(width, depth, expected):
    assert block_rams(width, depth) == expected


def test_a_fit_recovers_a_model_that_made_its_samples():
    truth = ResourceModel(
        pe={"pe": {"lut": (1.0, 2.0), "ff": (19.0, 2.0), "dsp": (1.0, 0.0),
                   "bram36": (0.0, 0.0)},
            "pe_pair": {"lut": (38.0, 4.0), "ff": (39.0, 4.0), "dsp": (1.0, 0.0),
                        "bram36": (0.0, 0.0)},
            "dot_pair_k2": {"lut": (30.0, 3.0), "ff": (20.0, 3.0), "dsp": (2.0, 0.0),
                            "bram36": (0.0, 0.0)},
            "dot_pair_k4": {"lut": (34.0, 3.0), "ff": (24.0, 3.0), "dsp": (4.0, 0.0),
                            "bram36": (0.0, 0.0)}},
        rest={"lut": {"one": 5000.0, "lanes": 2000.0, "lane_slab": 300.0, "act_bram": 20.0},
              "ff": {"one": 5500.0, "lanes": 1600.0, "lane_accumulator_bits": 9.0},
              "dsp": {"one": 20.0, "lanes": 8.0},
              "bram36": {"one": 6.0, "act_bram": 1.0, "other_bram": 1.0}},
        fitted_on=())
    base = PRESETS["small"].accelerator
    configs = [replace(base, array=array, k_max=k_max, macs_per_dsp=packing,
                       act_read_ports=ports, act_depth=depth, k_per_cycle=k)
               for array, k_max, packing, ports, depth, k in (
                   (4, 128, 1, 2, 4096, 1), (6, 64, 2, 1, 2048, 1), (8, 256, 1, 1, 8192, 1),
                   (10, 512, 2, 2, 4096, 1), (12, 512, 2, 2, 8192, 1),
                   (16, 1024, 1, 1, 16384, 1), (4, 128, 2, 2, 4096, 2), (8, 512, 2, 1, 8192, 2),
                   (8, 256, 2, 1, 8192, 4), (12, 1024, 2, 2, 4096, 4))]

    def estimate(config):
        kind, count = pe_count(config)
        bits = accumulator_width(config.k_max)
        unit = {r: truth.pe[kind][r][0] + truth.pe[kind][r][1] * bits for r in RESOURCES}
        return {"total": truth.predict(config), "pe": {"count": count, "unit": unit}}

    fitted = fit([(str(index), config, estimate(config)) for index, config in enumerate(configs)])
    for config in configs + [replace(base, array=24, k_max=2048)]:
        predicted, expected = fitted.predict(config), truth.predict(config)
        for resource in RESOURCES:
            assert predicted[resource] == pytest.approx(expected[resource], rel=0.005, abs=1)


def test_the_shipped_model_grows_with_the_array_and_packing_saves_dsps():
    model = ResourceModel.load()
    base = PRESETS["zcu102-k1"].accelerator
    small, large = (model.predict(replace(base, array=array)) for array in (16, 32))
    assert all(large[resource] > small[resource] for resource in ("lut", "ff", "dsp"))
    packed = model.predict(replace(base, array=32, macs_per_dsp=2))
    assert packed["dsp"] < large["dsp"] - 400
    # Two ACT banks: a memory of 16,384 words and one of 4,096.
    assert rest_features(base)["act_bram"] == block_rams(8 * 40, 16384) + block_rams(8 * 40, 4096)
    one_bank = replace(base, act_banks=1, act_depth=17408)
    assert rest_features(one_bank)["act_bram"] == block_rams(8 * 40, 17408)


def test_a_model_file_that_is_not_a_model_is_refused(tmp_path):
    bad = tmp_path / "model.json"
    bad.write_text('{"pe": {}}')
    with pytest.raises(ConfigError, match=rf"^resource model {bad} cannot be read: KeyError"):
        ResourceModel.load(bad)
    with pytest.raises(ConfigError, match=r"^samples must not be empty$"):
        fit([])


def test_the_shipped_model_predicts_the_cascade_array_from_its_own_samples():
    model = ResourceModel.load()
    base = PRESETS["zcu102-32x32"].accelerator
    pairs = replace(base, macs_per_dsp=2)
    cascade = {k: model.predict(replace(pairs, k_per_cycle=k)) for k in (2, 4)}
    # A dot pair has k_per_cycle DSP48E2s for 2 * k_per_cycle MACs; its run accumulators
    # serve k_per_cycle products, so the LUTs per MAC fall with k_per_cycle.
    assert cascade[2]["dsp"] >= 2 * 32 * 32 // 2
    assert cascade[4]["dsp"] >= 4 * 32 * 32 // 2
    assert cascade[2]["lut"] / 2 < 0.6 * model.predict(pairs)["lut"]
    assert cascade[4]["lut"] / 4 < 0.6 * cascade[2]["lut"] / 2
    # ACT and WGT interleave k_per_cycle memories of depth / k_per_cycle each.
    terms = rest_features(replace(pairs, k_per_cycle=4))
    assert terms["lane_slab"] == 32 * 3
    # Its rows read the result registers through multiplexers; the PE array's chains do not.
    assert terms["drain_bits"] == 32 ** 2 * accumulator_width(base.k_max)
    assert rest_features(pairs)["drain_bits"] == 0
    assert terms["act_bram"] == 4 * block_rams(8 * 32, 51200 // 4)
    estimate = {"total": model.predict(base),
                "pe": {"count": 1, "unit": dict.fromkeys(RESOURCES, 1.0)}}
    without_k4 = [(str(k), replace(pairs, k_per_cycle=k), estimate) for k in (1, 2)]
    with pytest.raises(ConfigError, match=r"^samples must include macs_per_dsp=2 with "
                                          r"k_per_cycle=4 \(dot_pair_k4\)$"):
        fit([("pe", base, estimate), *without_k4])
