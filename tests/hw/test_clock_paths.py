"""The parts whose paths limited the ``zcu102`` preset's clock stay within its period.

Each part is synthesized on its own (Yosys ``synth_xilinx -family xcup``, cached by
content) at the preset's array size where the path depends on it, and its slowest
register-to-register path under the -2 delay model (``vitforge.sw.timing``) must fit the
preset's clock period. These are paths that were cut by registers for the preset's
clock (``docs/performance.md``, "Clock evidence"), each of which the part shows on its
own: removing one of those registers makes the test fail with the path it left. (The
cuts behind a block RAM's output or the instruction register, whose delay a part on its
own does not see at its ports, show only in the preset's estimate.)
"""


from dataclasses import replace

import pytest

from vitforge.boards.presets import PRESETS
from vitforge.hw.accel.dma import Dma
from vitforge.hw.accel.layernorm_statistics import LayerNormStatistics
from vitforge.hw.accel.row_compactor import RowCompactor
from vitforge.hw.accel.row_softmax import RowSoftmax
from vitforge.hw.axi.burst_master import AxiBurstMaster
from vitforge.hw.gemm.tile_controller import TileController
from vitforge.hw.verilog import to_verilog
from vitforge.sw import resources

PRESET = PRESETS["zcu102"]
CONFIG = PRESET.accelerator
PERIOD_NS = 1000 / PRESET.clock_mhz

PARTS = {
    # The weighted sum of the 40 lanes' products, added in two stages.
    "compactor": lambda: RowCompactor(CONFIG),
    # scale and offset: products wider than a DSP48E2, in halves, summed a stage later.
    "layernorm_statistics": lambda: LayerNormStatistics(lanes=2, units=1),
    # The walk's turns as registers before the index buffer's address (and the index word
    # into the A address register).
    "tile_controller": lambda: TileController(CONFIG.gemm),
    # With four steps of K per cycle, the tile's last step without a round-up adder.
    "tile_controller_k4": lambda: TileController(
        replace(CONFIG, macs_per_dsp=2, k_per_cycle=4).gemm),
    # A request joins a burst by comparing with registers only.
    "burst_master": lambda: AxiBurstMaster(),
    # SOFTMAX: whether a pair of its sums pass has an odd word is a flag from a count of the
    # words left (no adder and comparison before it); the path does not depend on the lanes.
    "row_softmax": lambda: RowSoftmax(replace(CONFIG, array=4)),
    # The external words of a LOAD (40-byte weight entries back to back) and of a LOAD_SPARSE
    # group: products by constants as shifted sums, not a DSP48E2 before the register.
    "dma": lambda: Dma(CONFIG),
}


@pytest.mark.parametrize("name", sorted(PARTS))
def test_the_part_fits_the_preset_clock(name):
    verilog = to_verilog(PARTS[name](), name, synthesis=True)
    _, path = resources.synthesized_part(verilog, name, [], depth=True)
    assert path.delay_ns <= PERIOD_NS, (
        f"{name}: {path.delay_ns:.2f} ns ({path.lut_levels} LUT levels + {path.carry_bits} "
        f"carry bits) from {path.start} to {path.end} through {path.cells}, above the "
        f"{PERIOD_NS:.2f} ns of the zcu102 preset's {PRESET.clock_mhz} MHz")
