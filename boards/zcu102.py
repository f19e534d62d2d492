"""The Xilinx ZCU102 evaluation board (Zynq UltraScale+ XCZU9EG) as an Amaranth platform."""

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource
from amaranth.vendor import XilinxPlatform
from amaranth_boards.resources import ButtonResources, LEDResources

__all__ = ["ZCU102Platform", "PART", "BOARD_PART"]

#: Vivado part and board part of the ZCU102.
PART = "xczu9eg-ffvb1156-2-e"
BOARD_PART = "xilinx.com:zcu102:part0:3.4"


class ZCU102Platform(XilinxPlatform):
    """ZCU102 programmable-logic resources: the 125 MHz LVDS clock, LEDs and buttons.

    The accelerator itself is normally clocked by the processing system's
    ``pl_clk0`` in the Vivado block design (see ``vitforge generate``); this
    platform serves stand-alone PL designs and pin checks.
    """

    device = "xczu9eg"
    package = "ffvb1156"
    speed = "2-e"
    default_clk = "clk125"
    resources = [
        Resource("clk125", 0, DiffPairs("G21", "F21", dir="i"), Clock(125e6),
                 Attrs(IOSTANDARD="LVDS_25")),
        *LEDResources(pins="AG14 AF13 AE13 AJ14 AJ15 AH13 AH14 AL12",
                      attrs=Attrs(IOSTANDARD="LVCMOS33")),
        *ButtonResources(pins="AG15 AF15 AE15 AE14 AG13", attrs=Attrs(IOSTANDARD="LVCMOS33")),
        Resource("cpu_reset", 0, Pins("AM13", dir="i"), Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors = []
