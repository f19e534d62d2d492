"""The accelerator as the processing system sees it: registers, a memory master, an interrupt."""

from amaranth import Cat, Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..axi.burst_master import AxiBurstMaster
from ..axi.lite_registers import AxiLiteRegisters
from ..axi.signals import axi_lite_slave_members, axi_master_members, connect_flat, prefixed
from .accelerator import COUNTER_CLASSES, Accelerator
from .isa import SIDE_CLASSES
from .ports import MEMORY_DATA_BITS
from .profile import profile_retirements
from .regmap import REGISTERS

__all__ = ["AcceleratorShell", "REGISTER_ADDRESS_BITS"]

#: The register block answers a 4 KB window.
REGISTER_ADDRESS_BITS = 12


class AcceleratorShell(wiring.Component):
    """:class:`Accelerator` behind an AXI4-Lite slave and an AXI4 master.

    The host writes the memory image's byte address (``IMAGE_BASE_*``) and the
    program's first word (``PROGRAM_ADDR``), then sets ``CONTROL`` bit 0; the
    accelerator reads and writes the image through ``m_axi`` in bursts
    (:class:`AxiBurstMaster`). ``STATUS`` reports done once the program has
    ended *and* every write has been acknowledged; at that moment
    ``IRQ_STATUS`` bit 0 is set, and ``irq`` is high while it is set and
    ``CONTROL`` bit 1 enables it. A start while busy is ignored.

    A run stops early, cleanly, on an AXI error response (SLVERR or DECERR,
    on a read or a write: ``STATUS`` says which) or on ``CONTROL`` bit 2
    (abort, for a host whose watchdog expired): the accelerator is held in
    reset from the next cycle, its requests stop, the bursts in flight
    complete (their read data are dropped), and then ``STATUS`` reports done
    with bit 8 set and the interrupt fires, as at the end of a program. The
    next start runs normally. The register
    map is :data:`vitforge.hw.accel.regmap.REGISTERS`; ``HW_*`` registers read
    back the :class:`AcceleratorConfig`, so a driver can check a program
    against the bitstream; ``PROFILE_*`` read the :class:`RetireProfile`, the
    cycle at which each instruction retired (per-layer latency on the board).

    Parameters
    ----------
    config : AcceleratorConfig
    address_width : int
        Byte-address width of ``m_axi`` (the ZCU102's HP ports take 49 bits;
        40 cover its DDR).
    max_burst, max_outstanding : int
        See :class:`AxiBurstMaster`.

    Attributes
    ----------
    ``s_axil_*`` : AXI4-Lite slave (32-bit data, 12-bit addresses)
    ``m_axi_*`` : AXI4 master (128-bit data)
    irq : ``Out(1)``
        Level-high interrupt.
    led : ``Out(2)``
        Bit 0: busy; bit 1: the last program ended with an error.
    """

    def __init__(self, config, *, address_width=40, max_burst=16, max_outstanding=4):
        self._config = config
        self._master = AxiBurstMaster(address_width=address_width, max_burst=max_burst,
                                      max_outstanding=max_outstanding)
        super().__init__({
            **prefixed("s_axil", axi_lite_slave_members(REGISTER_ADDRESS_BITS)),
            **prefixed("m_axi", axi_master_members(address_width, MEMORY_DATA_BITS)),
            "irq": Out(1),
            "led": Out(2),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.registers = registers = AxiLiteRegisters(
            REGISTERS, address_width=REGISTER_ADDRESS_BITS)
        accelerator = Accelerator(self._config)
        stopped = Signal()      # a bus error or an abort ended the run early
        launch = Signal()       # a start the accelerator takes
        m.submodules.accelerator = ResetInserter(stopped & ~launch)(accelerator)
        m.submodules.master = master = self._master
        connect_flat(m, self, "s_axil", registers,
                     axi_lite_slave_members(REGISTER_ADDRESS_BITS))
        connect_flat(m, self, "m_axi", master,
                     axi_master_members(len(master.base), MEMORY_DATA_BITS))
        _connect_unless_stopped(m, accelerator.mem, master.mem, stopped)

        control = registers.reg_CONTROL
        busy = accelerator.busy | ~master.idle
        m.d.comb += launch.eq(control[0] & ~busy)
        with m.If(launch):
            m.d.sync += stopped.eq(0)
        with m.Elif(master.bus_error | control[2]):
            m.d.sync += stopped.eq(1)
        finished = (accelerator.done | stopped) & master.idle
        was_finished = Signal()
        irq_pending = Signal()
        m.d.sync += was_finished.eq(finished)
        with m.If(registers.clear_IRQ_STATUS[0]):
            m.d.sync += irq_pending.eq(0)
        with m.If(finished & ~was_finished):
            m.d.sync += irq_pending.eq(1)
        m.d.comb += [
            accelerator.start.eq(launch),
            accelerator.program_addr.eq(registers.reg_PROGRAM_ADDR),
            master.base.eq(Cat(registers.reg_IMAGE_BASE_LO, registers.reg_IMAGE_BASE_HI)),
            master.clear_error.eq(launch),
            registers.reg_STATUS.eq(Cat(busy, finished, accelerator.error, master.bus_error,
                                        master.bus_error_resp, master.bus_error_write,
                                        stopped)),
            registers.reg_IRQ_STATUS.eq(irq_pending),
            registers.reg_ERROR_PC.eq(accelerator.error_pc),
            registers.reg_CYCLES.eq(accelerator.cycles),
            self.irq.eq(irq_pending & control[1]),
            self.led.eq(Cat(busy, accelerator.error != 0)),
        ]
        profile = profile_retirements(m, accelerator)
        m.d.comb += [
            profile.read_addr.eq(registers.reg_PROFILE_INDEX),
            registers.reg_PROFILE_CYCLES.eq(profile.read_data),
        ]
        for index, name in enumerate(COUNTER_CLASSES):
            m.d.comb += getattr(registers, f"reg_CYCLES_{name.upper()}").eq(
                accelerator.class_cycles[index])
        for index, name in enumerate(SIDE_CLASSES):
            m.d.comb += getattr(registers, f"reg_CYCLES_BESIDE_{name.upper()}").eq(
                accelerator.side_cycles[index])
        for name, value in self._config.to_dict().items():
            m.d.comb += getattr(registers, f"reg_HW_{name.upper()}").eq(value)
        return m


def _connect_unless_stopped(m, accelerator_mem, master_mem, stopped):
    """Connect the accelerator's memory port to the master's, cut while ``stopped``:
    no request passes, and read data are taken and dropped, so bursts in flight drain."""
    request, response = accelerator_mem.req, master_mem.resp
    m.d.comb += [
        master_mem.req.payload.eq(request.payload),
        master_mem.req.valid.eq(request.valid & ~stopped),
        request.ready.eq(master_mem.req.ready & ~stopped),
        accelerator_mem.resp.payload.eq(response.payload),
        accelerator_mem.resp.valid.eq(response.valid & ~stopped),
        response.ready.eq(accelerator_mem.resp.ready | stopped),
    ]
