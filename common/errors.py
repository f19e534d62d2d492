"""The exceptions vitforge raises, and the command line's exit status for each.

Every error vitforge raises on purpose derives from :exc:`VitforgeError`. The
classes that describe bad input also derive from the built-in exception a
caller would have caught before (``ValueError``, ``TypeError``, ``OSError``),
so ``except ValueError`` keeps working.

::

    VitforgeError
    +-- UserError              2   the user asked for something invalid
    |   +-- ConfigError            (ValueError) a parameter or input file breaks a rule
    |   +-- ConfigTypeError        (TypeError) a parameter has the wrong type
    |   +-- OutputError            (OSError) an output the user named cannot be written
    +-- SimulationError        1   a run of the design failed (RuntimeError)
    |   +-- WatchdogError          a design did not finish within its cycle budget
    |   +-- DriverError            (vitforge.sw.runtime.driver) a driven run failed
    +-- ToolchainError         3   a required tool is missing (RuntimeError)
    +-- ProgramError          70   an impossible accelerator program (ValueError)

===  ========================  =====================================================
 0   :data:`EXIT_OK`           success (and RTL == golden where a command checks it)
 1   :data:`EXIT_MISMATCH`     the RTL disagreed with the golden model, or a run failed
 2   :data:`EXIT_USAGE`        bad arguments, config, model file or output path
 3   :data:`EXIT_TOOLCHAIN`    a required tool (Verilator, cocotb) is missing
70   :data:`EXIT_INTERNAL`     a bug in vitforge (any other exception): please report it
130  :data:`EXIT_INTERRUPTED`  interrupted (Ctrl-C)
===  ========================  =====================================================
"""

__all__ = ["VitforgeError", "UserError", "ConfigError", "ConfigTypeError", "OutputError",
           "SimulationError", "WatchdogError", "ToolchainError", "ProgramError",
           "EXIT_OK", "EXIT_MISMATCH", "EXIT_USAGE", "EXIT_TOOLCHAIN", "EXIT_INTERNAL",
           "EXIT_INTERRUPTED", "exit_status"]

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_TOOLCHAIN = 3
#: ``EX_SOFTWARE`` of BSD's sysexits: an internal software error.
EXIT_INTERNAL = 70
#: 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C.
EXIT_INTERRUPTED = 130


class VitforgeError(Exception):
    """Base of every error vitforge raises on purpose."""


class UserError(VitforgeError):
    """The user asked for something invalid; the one-line message says what and how to fix it."""


class ConfigError(UserError, ValueError):
    """A parameter or a file the user gave breaks a rule; the message names it, rule, value."""


class ConfigTypeError(UserError, TypeError):
    """A parameter has the wrong type; the message names the parameter, the type, the value."""


class OutputError(UserError, OSError):
    """An output the user named cannot be written (the message names the path and why)."""


class SimulationError(VitforgeError, RuntimeError):
    """A run of the design could not finish, or its result is unusable.

    The run is a simulation (Verilator, Amaranth's simulator) or, through the
    runtime driver, the accelerator itself.
    """


class WatchdogError(SimulationError):
    """A simulated design did not reach an expected state within its cycle budget."""


class ToolchainError(VitforgeError, RuntimeError):
    """A required tool is missing or unusable; the message says how to get it."""


class ProgramError(VitforgeError, ValueError):
    """An accelerator program asks for something impossible; the message names the instruction.

    Programs come from the compiler, so from the command line this is a bug
    (exit status :data:`EXIT_INTERNAL`), not a usage error.
    """


def exit_status(error):
    """The command line's exit status for ``error`` (see the module's table).

    Parameters
    ----------
    error : Exception

    Returns
    -------
    int
        :data:`EXIT_USAGE`, :data:`EXIT_MISMATCH` or :data:`EXIT_TOOLCHAIN`
        for those errors, :data:`EXIT_INTERNAL` for anything else.
    """
    if isinstance(error, UserError):
        return EXIT_USAGE
    if isinstance(error, SimulationError):
        return EXIT_MISMATCH
    if isinstance(error, ToolchainError):
        return EXIT_TOOLCHAIN
    return EXIT_INTERNAL
