"""Reading Parquet datasets a record batch at a time.

Parquet is how datasets usually leave pandas, Spark or the Hugging Face hub. The file is read
in batches of ``BATCH_ROWS`` rows and only the mapped columns are decoded, so a large file is
never held whole in memory beyond the validated examples themselves. Arrow values become the
Python values a JSONL file would give (``string``/``large_string`` → ``str``, integers →
``int``, ``bool`` → ``bool``, null → ``None``), and the same row rules then judge them.
pyarrow is imported inside the reader, so that importing ``lpft_core`` stays light.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from lpft_core.data.fields import ROLES, FieldMap
from lpft_core.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

#: Rows decoded at a time: a batch of the longest texts allowed stays within tens of MB.
BATCH_ROWS = 1024
#: Bytes a row may decompress to per character of ``max_text_chars``: text, text pair and
#: label at up to 4 UTF-8 bytes a character. A file whose metadata promises more cannot hold
#: valid rows and is refused before it is decompressed (a small file can inflate to GBs).
BYTES_PER_ROW_CHAR = 3 * 4
#: Room for Parquet's own bookkeeping (value lengths, levels, page headers), per row and once.
ROW_OVERHEAD_BYTES = 64
FILE_OVERHEAD_BYTES = 1 << 20


def parquet_records(
    handle: BinaryIO,
    source: str,
    fields: FieldMap,
    *,
    max_text_chars: int,
    max_rows: int | None = None,
    max_decoded_bytes: int | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row_number, record)`` pairs of a Parquet file, row numbers counted from 1.

    The schema and the size the metadata promises are checked here, before any row is read;
    the rows are decoded lazily, as the returned iterator is consumed.

    Raises:
        DataError: the bytes are not Parquet, a needed column is absent (``FieldMap.
            check_columns``), the file holds more than ``max_rows`` rows, it would
            decompress to more than valid rows can take, or (as it is read) its text decodes
            to more than ``max_decoded_bytes``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(handle)
        columns = parquet.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise _not_parquet(source, exc) from None
    fields.check_columns(columns, source)
    wanted = [fields.column(role) for role in ROLES if fields.column(role) in columns]
    metadata = parquet.metadata
    if max_rows is not None and metadata.num_rows > max_rows:
        raise DataError(
            f"more than {max_rows} rows ({metadata.num_rows}), the limit per dataset; split "
            "the data or sample it",
            source=source,
        )
    promised = _uncompressed_bytes(parquet, wanted)
    row_bytes = BYTES_PER_ROW_CHAR * max_text_chars + ROW_OVERHEAD_BYTES
    if promised > metadata.num_rows * row_bytes + FILE_OVERHEAD_BYTES:
        raise DataError(
            f"the columns {wanted} decompress to {promised} bytes, more than "
            f"{metadata.num_rows} rows of at most {max_text_chars} characters can hold; "
            "shorten the texts or raise max_text_chars",
            source=source,
        )
    return _rows(parquet, wanted, source, max_decoded_bytes)


def _rows(
    parquet: pq.ParquetFile, columns: list[str], source: str, max_decoded_bytes: int | None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records, decoded a batch at a time. The metadata's sizes are the uploader's word
    and dictionary pages stay small however often a long string repeats, so each batch's
    decoded bytes are counted by Arrow before any becomes a Python string, against
    ``max_decoded_bytes`` for the whole file."""
    import pyarrow as pa

    row, decoded = 0, 0
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            batch.validate(full=True)  # invalid UTF-8 in a string column fails here
            decoded += _decoded_bytes(batch)
            if max_decoded_bytes is not None and decoded > max_decoded_bytes:
                raise DataError(
                    f"the rows decode to more than {max_decoded_bytes} bytes of text (by row "
                    f"{row + batch.num_rows}), the limit per upload; split the file",
                    source=source,
                )
            for record in batch.to_pylist():
                row += 1
                yield row, record
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _not_parquet(source, exc) from None


def _decoded_bytes(batch: pa.RecordBatch) -> int:
    """Bytes of the batch's string and binary values once decoded (Arrow's own buffers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in batch.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            total += pc.sum(pc.binary_length(column)).as_py() or 0
        elif pa.types.is_dictionary(column.type):
            lengths = pc.binary_length(column.dictionary)
            total += pc.sum(pc.take(lengths, column.indices)).as_py() or 0
    return total


def _uncompressed_bytes(parquet: pq.ParquetFile, columns: list[str]) -> int:
    """What the metadata says ``columns`` take once decompressed, over every row group."""
    metadata = parquet.metadata
    total = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            if chunk.path_in_schema.split(".")[0] in columns:
                total += chunk.total_uncompressed_size
    return total


def _not_parquet(source: str, exc: Exception) -> DataError:
    return DataError(
        f"not a readable Parquet file ({exc}); upload a file written by a Parquet writer "
        "(pandas to_parquet, pyarrow, Spark), or use .jsonl or .csv",
        source=source,
    )
