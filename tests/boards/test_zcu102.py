"""The ZCU102 platform: a small design builds into Vivado files without running Vivado."""

from amaranth import Elaboratable, Module, Signal
from amaranth.lib import io

from vitforge.boards.zcu102 import PART, ZCU102Platform


class Blinky(Elaboratable):
    def elaborate(self, platform):
        m = Module()
        counter = Signal(27)
        m.d.sync += counter.eq(counter + 1)
        for index in range(8):
            m.submodules[f"led_{index}"] = led = io.Buffer(
                "o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(counter[-1] ^ (index & 1))
        return m


def test_plan_has_the_part_the_clock_and_the_pins():
    plan = ZCU102Platform().build(Blinky(), name="blinky", do_build=False)
    files = dict(plan.files)
    constraints = files["blinky.xdc"]
    script = files["blinky.tcl"]
    assert PART.startswith(ZCU102Platform.device)
    assert "xczu9eg-ffvb1156-2-e" in script
    for pin in ("G21", "F21", "AG14", "AL12"):
        assert pin in constraints, pin
    assert "LVDS_25" in constraints and "create_clock" in constraints
    assert "8.0" in constraints            # the 125 MHz clock's period in ns
