"""What a catalogued bad input is: a command line, the files it reads, and vitforge's answer.

The catalogue itself is ``bad_inputs.CASES``; ``tests/sw/test_bad_inputs.py`` runs it. In a
case's ``argv`` and ``message``, ``<tmp>`` stands for the working folder's absolute path.
"""

from dataclasses import dataclass, field
from pathlib import Path
import shlex

__all__ = ["BadInput", "Link", "case", "TMP", "CLASSES", "ARGS", "OUT", "CONFIG", "MODEL",
           "SELECTOR", "DATA", "SPACES", "REPLAY", "USER_FOLDER", "NOTES", "SPACE"]

#: The placeholder of the working folder in ``argv`` and ``message``.
TMP = "<tmp>"
#: The classes of bad input, in the order of the documentation's table.
CLASSES = ("command-line arguments", "output paths", "config files", "model files",
           "selector files", "data files", "design spaces", "replay files")
ARGS, OUT, CONFIG, MODEL, SELECTOR, DATA, SPACES, REPLAY = CLASSES
#: Files that several cases start from: a user's folder, a user's file, a design space.
USER_FOLDER = (("user/", None), ("user/notes.txt", "mine"))
NOTES = (("notes.txt", "mine"),)
SPACE = (("space.json", '{"array": [4, 8]}'),)


@dataclass(frozen=True)
class Link:
    """A symbolic link to ``target`` (relative to the link's folder)."""

    target: str


@dataclass(frozen=True)
class BadInput:
    """One bad input and vitforge's answer to it.

    Attributes
    ----------
    id : str
        Unique, kebab-case: the test's id.
    kind : str
        Its class, one of :data:`CLASSES`.
    argv : tuple of str
        The command line after ``vitforge``.
    wrong : str
        What is wrong with it, in words.
    message : str
        How the one line on stderr starts after ``vitforge: error: ``.
    status : int
        The exit status (README's table).
    files : tuple of (str, object)
        What the working folder holds first, in order: a name ending in ``/`` is a
        folder; the content is text, bytes, a :class:`Link` or a function that writes
        the file given its path.
    hidden : tuple of str
        Python packages that are not installed for this case.
    """

    id: str
    kind: str
    argv: tuple
    wrong: str
    message: str
    status: int = 2
    files: tuple = ()
    hidden: tuple = field(default=())

    def prepare(self, folder):
        """Write :attr:`files` into ``folder``; returns ``(argv, message)`` for it."""
        folder = Path(folder)
        for name, content in self.files:
            path = folder / name
            if name.endswith("/"):
                path.mkdir(parents=True)
            elif isinstance(content, Link):
                path.symlink_to(content.target)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            elif isinstance(content, str):
                path.write_text(content)
            else:
                content(path)
        return ([arg.replace(TMP, str(folder)) for arg in self.argv],
                self.message.replace(TMP, str(folder)))


def case(id, kind, argv, wrong, message, status=2, files=(), hidden=()):
    """A :class:`BadInput`; ``argv`` is the command line after ``vitforge`` as typed."""
    return BadInput(id, kind, tuple(shlex.split(argv)), wrong, message, status, tuple(files),
                    tuple(hidden))
