"""Print the requirements of pyproject.toml's extras, following their ``lpft[...]``
references to other extras: ``python requirements_of.py api,s3`` (one extra, or several
separated by commas, as pip writes them).

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
    named = sys.argv[1].split(",") if len(sys.argv) == 2 else []
    if not named or not set(named) <= set(EXTRAS):
        # An image built without its EXTRA build argument gets here with no extra at all.
        sys.exit(f"usage: python requirements_of.py EXTRA[,EXTRA...], of: {', '.join(EXTRAS)}")
    listed = {requirement for extra in named for requirement in requirements(extra)}
    sys.stdout.write("\n".join(sorted(listed)) + "\n")
