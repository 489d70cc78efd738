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
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row_number, record)`` pairs of a Parquet file, row numbers counted from 1.

    The schema and the size the metadata promises are checked here, before any row is read;
    the rows are decoded lazily, as the returned iterator is consumed.

    Raises:
        DataError: the bytes are not Parquet, a needed column is absent (``FieldMap.
            check_columns``), the file holds more than ``max_rows`` rows, or it would
            decompress to more than valid rows can take.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowException, OSError) as exc:
        raise _not_parquet(source, exc) from None
    columns = parquet.schema_arrow.names
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
    return _rows(parquet, wanted, source)


def _rows(
    parquet: pq.ParquetFile, columns: list[str], source: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa

    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            for record in batch.to_pylist():
                row += 1
                yield row, record
    except (pa.ArrowException, OSError) as exc:
        raise _not_parquet(source, exc) from None


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
