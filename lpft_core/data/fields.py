"""Which columns of a user's file hold the text, the optional text pair and the label.

People's files name these columns ``sentence``, ``premise``/``hypothesis`` or ``category``
rather than ``text``, ``text_pair`` and ``label``; a ``FieldMap`` says which is which, so the
file need not be rewritten first. Errors name the user's column and the option that mapped it
(``column 'sentence' (text_field)``): that is what the user has to look for and change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lpft_core.errors import ConfigError, DataError

Role = Literal["text", "text_pair", "label"]

#: The roles a column can play, in the order errors report them.
ROLES: tuple[Role, ...] = ("text", "text_pair", "label")
#: Longest column name a mapping may give, checked before any file is read.
MAX_FIELD_NAME_CHARS = 200


@dataclass(frozen=True)
class FieldMap:
    """The column of each role; the defaults read files whose columns already have our names.

    Attributes:
        text: column of the input text (required in every row).
        text_pair: column of the second text of a sentence pair; optional unless it is mapped
            to another name, in which case the file must have it.
        label: column of the label (a string or an integer in every row).

    Raises:
        ConfigError: a name is empty, too long, holds control characters, or two roles share
            a column; the error names the option (``text_field`` and so on).
    """

    text: str = "text"
    text_pair: str = "text_pair"
    label: str = "label"

    def __post_init__(self) -> None:
        for role in ROLES:
            column = self.column(role)
            option = option_name(role)
            if not isinstance(column, str) or not column.strip():
                raise ConfigError(option, "must be a non-empty column name")
            if len(column) > MAX_FIELD_NAME_CHARS:
                raise ConfigError(
                    option, f"has {len(column)} characters; the most is {MAX_FIELD_NAME_CHARS}"
                )
            if not column.isprintable():
                raise ConfigError(option, "holds a control or unprintable character")
        columns = [self.column(role) for role in ROLES]
        for role in ROLES:
            if columns.count(self.column(role)) > 1:
                raise ConfigError(
                    option_name(role),
                    f"column {self.column(role)!r} is mapped to two roles; give each its own",
                )

    def column(self, role: Role) -> str:
        """The file's column that plays ``role``."""
        return str(getattr(self, role))

    def is_mapped(self, role: Role) -> bool:
        """Whether ``role`` was mapped to a column of another name."""
        return self.column(role) != role

    def describe(self, role: Role, *, quote: bool = False) -> str:
        """How errors name ``role``'s column: plainly (``text``, or ``'text'`` with ``quote``)
        when it has its default name, else ``column 'sentence' (text_field)``."""
        if not self.is_mapped(role):
            return repr(role) if quote else role
        return f"column {self.column(role)!r} ({option_name(role)})"

    def check_columns(self, columns: Sequence[str], source: str, line: int | None = None) -> None:
        """Check that a file with ``columns`` has every column this mapping needs: ``text``
        and ``label``, and ``text_pair`` when it was mapped.

        Raises:
            DataError: a needed column is absent; a mapped one names its option
                (``field='text_field'``), and every one lists the columns that exist.
        """
        found = list(columns)
        for role in ROLES:
            column = self.column(role)
            if column in found or (role == "text_pair" and not self.is_mapped(role)):
                continue
            if self.is_mapped(role):
                raise DataError(
                    f"{option_name(role)} names column {column!r}, which the file does not "
                    f"have; its columns are {found}",
                    source=source,
                    line=line,
                    field=option_name(role),
                )
            raise DataError(
                f"the file has no {column!r} column (found {found}); name the columns text, "
                f"label and optionally text_pair, or give {option_name(role)} to map yours",
                source=source,
                line=line,
                field=role,
            )


def option_name(role: Role) -> str:
    """The upload option (and CLI flag stem) that maps ``role``: ``text_field`` and so on."""
    return f"{role}_field"


#: The mapping of files that already use our column names.
DEFAULT_FIELDS = FieldMap()
