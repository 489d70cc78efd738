"""Print the requirements of one of pyproject.toml's extras, following its ``lpft[...]``
references to other extras: ``python requirements_of.py api``.

The images install their dependencies in a layer of their own, before the source is copied, so
that editing the code does not reinstall them; pip cannot install a project's dependencies
without the project, hence this list. Standard library only: it runs before anything else is
installed.
"""

import sys
import tomllib
from collections.abc import Iterator

with open("pyproject.toml", "rb") as file:
    EXTRAS = tomllib.load(file)["project"]["optional-dependencies"]


def requirements(extra: str) -> Iterator[str]:
    for requirement in EXTRAS[extra]:
        if requirement.startswith("lpft["):
            for inner in requirement.removeprefix("lpft[").removesuffix("]").split(","):
                yield from requirements(inner.strip())
        else:
            yield requirement


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in EXTRAS:
        # An image built without its EXTRA build argument gets here with no extra at all.
        sys.exit(f"usage: python requirements_of.py EXTRA, one of: {', '.join(EXTRAS)}")
    sys.stdout.write("\n".join(sorted(set(requirements(sys.argv[1])))) + "\n")
