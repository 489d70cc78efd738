"""The one rule for object keys, checked before any I/O: keys are built only from server-made
ids, so anything that could name a place outside the store's root (``..``, an absolute path, a
backslash, an empty segment, a control character) is a bug or an attack, and is refused."""

from __future__ import annotations

MAX_KEY_BYTES = 1024  # S3's limit on a key, and far beyond any path we build


def validate_key(key: str) -> str:
    """``key`` itself when it is a safe relative key such as ``jobs/<id>/model/config.json``;
    ValueError otherwise."""
    if not isinstance(key, str) or not key:
        raise ValueError("an object key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object key longer than {MAX_KEY_BYTES} bytes")
    if "\\" in key:
        raise ValueError(f"object key {key!r} holds a backslash")
    if any(ord(char) < 32 or ord(char) == 127 for char in key):
        raise ValueError(f"object key {key!r} holds a control character")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} is absolute")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"object key {key!r} has an empty, '.' or '..' segment")
    return key


def validate_prefix(prefix: str, *, allow_root: bool = False) -> str:
    """A prefix follows the key rule; the empty prefix (the whole store) only where
    ``allow_root`` says a caller may mean everything (listing, never deleting)."""
    if prefix == "" and allow_root:
        return prefix
    return validate_key(prefix)


def join(*parts: str) -> str:
    """The key made of ``parts`` joined by ``/``, validated."""
    return validate_key("/".join(parts))


def child_key(prefix: str, key: str) -> str:
    """``key`` under ``prefix``; the empty prefix is the store's root."""
    return join(prefix, key) if prefix else validate_key(key)
