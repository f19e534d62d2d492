"""``vitforge replay FILE``: a saved program on the golden interpreter and on the RTL."""

from vitforge.errors import EXIT_MISMATCH, EXIT_OK, ConfigError, ProgramError

from .cli_support import log

__all__ = ["add_replay_parser", "replay"]


def add_replay_parser(commands):
    parser = commands.add_parser(
        "replay", help="run a replay file (a program the fuzzer saved) on the golden model "
                       "and the RTL, and compare the whole memory and the cycles")
    parser.add_argument("file", help="a replay file (.npz: image, program_addr, config)")
    parser.add_argument("--golden-only", action="store_true",
                        help="run the golden interpreter and the cycle model only")


def replay(args):
    """Exit 0 when the RTL leaves memory as the golden interpreter does and takes the cycles
    the cycle model predicts, 1 otherwise, 2 for a file that is not a legal program."""
    from vitforge.sim.accel.batch import run_batch
    from vitforge.sim.replay import difference, load_replay, run_golden
    from vitforge.sw.golden.accel.interpreter import Machine

    config, image, program_addr = load_replay(args.file)
    machine = Machine(config, image)
    try:
        predicted = run_golden(machine, program_addr)
    except ProgramError as error:
        raise ConfigError(f"{args.file}: the golden interpreter refuses the program: "
                          f"{error}") from None
    print(f"golden: {machine.executed} instructions, {predicted.cycles} cycles predicted")
    if args.golden_only:
        return EXIT_OK
    rtl, = run_batch(config, [image], program_addr=program_addr,
                     max_cycles=10 * predicted.cycles + 100_000, log=log)
    problem = difference(bytes(machine.dram), predicted, rtl)
    if problem:
        print(f"RTL differs: {problem}")
        return EXIT_MISMATCH
    print(f"RTL == golden over the whole memory, {rtl['cycles']} cycles as predicted")
    return EXIT_OK
