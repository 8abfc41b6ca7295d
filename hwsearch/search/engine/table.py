"""The run table on disk: a compacted ``trials.parquet`` and an append-only folder of pieces, ``trials.d/``.

Recording a trial writes one small piece, ``trials.d/<seq>.json`` (the rows of that record; ``seq``
counts up from 0), instead of rewriting the whole table, so its cost does not depend on how many
trials the run already holds. When the pieces outnumber a threshold that grows with the table
(`MIN_PIECES`, or one per `GROWTH` rows of ``trials.parquet`` if more), `TrialLog` merges them into
``trials.parquet``. A merge rewrites the table, but the pieces recorded since the last one pay for
it: the total merge work over a run stays linear in its number of trials, not quadratic. The first
trial recorded is merged at once, so ``trials.parquet`` exists as soon as the run has a trial, and the
driver merges everything when a run ends, so that a finished run's ``trials.parquet`` is complete.

Crash safety. Both kinds of file are written atomically, and a piece is created once and never
rewritten. ``trials.parquet`` names in its metadata the last piece merged into it, so readers skip
the pieces merged already. The writer deletes those over the records that follow (two a record),
rather than stopping the driver for a merge's worth of deletions at once (on some file systems
deleting a file that was synced costs as much as writing one); after a crash, the next writer
goes on with what is left. A reader lists the pieces before it reads ``trials.parquet``: a merge that lands
meanwhile is seen whole or not at all, and a listed piece that a merge deleted before it was read
makes the reader start again.

Pieces are JSON: they hold the rows as plain values, so merging them rebuilds the table exactly as one
full rewrite of the same rows would, and one is quick to write and to read. A trial id recorded twice
is one row, at its first place, with its last values. ``trials.parquet`` alone (a run folder written
before pieces existed) reads as it always did.

One writer per run: the driver, which records through one `TrialLog` (and `append_rows` before it
starts, when a resume adds trials the table missed).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hwsearch.errors import RunError
from hwsearch.io import atomic_write_bytes, atomic_write_json

TABLE = "trials.parquet"
PIECES = "trials.d"
# ``node``: the Ray node (IP/node id) that evaluated the trial; ``failures``: its failed attempts (a lost
# node, a crash), each followed by a fresh start while ``ray.max_failures`` allows.
BASE_COLUMNS = ("trial_id", "status", "feasible", "error", "choice", "started_at", "finished_at", "duration_s",
                "artifacts", "node", "failures")
MIN_PIECES = 64  # below this many pieces a merge is not worth a rewrite, whatever the table's size
GROWTH = 16  # merge once the pieces reach a sixteenth of the table: at most 1/16 of the rows in small files
_MERGED_KEY = b"hwsearch.merged_piece"
_PIECE_NAME = re.compile(r"^(\d+)\.json$")
_READ_ATTEMPTS = 20


def read_table(run: Path) -> pd.DataFrame:
    """The run table of the run folder ``run``: ``trials.parquet`` with the pieces not yet merged into it."""
    return _snapshot(run).to_frame()


def replace_table(run: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Replace the whole table with ``rows`` (pieces included) and return the frame written."""
    last = max([_read_base(run)[1], *_piece_seqs(run)])
    df = frame(rows)
    _write_base(run, df, last)
    _remove_pieces(run, last)
    return df


def append_rows(run: Path, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` to the table as one piece (a one-off write; a run's driver records through `TrialLog`)."""
    TrialLog(run).append(rows)


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``rows`` as the run table: one row each, `BASE_COLUMNS` then the metric columns sorted by name."""
    df = pd.DataFrame(rows)
    for col in BASE_COLUMNS:
        if col not in df.columns:
            df[col] = None
    metric_cols = sorted(c for c in df.columns if c not in BASE_COLUMNS)
    return df[list(BASE_COLUMNS) + metric_cols]


def empty_frame() -> pd.DataFrame:
    """The table before the first trial."""
    return pd.DataFrame(columns=list(BASE_COLUMNS))


@dataclass
class TrialLog:
    """Records rows into a run's table in amortised constant time: the writer the driver keeps for a run."""

    run: Path
    next_seq: int = field(init=False)
    pending: int = field(init=False)  # pieces not merged into trials.parquet yet
    table_rows: int = field(init=False)  # rows of trials.parquet at its last merge
    merged_pieces: list[int] = field(init=False, default_factory=list)  # merged, not deleted yet

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        merged = self._rescan()
        # Left by the last writer: pieces merged but not deleted yet (deleted over the next records, as
        # after a merge), and temporary files of writes a crash cut short.
        self.merged_pieces = [s for s in _piece_seqs(self.run) if s <= merged]
        _remove_temporaries(self.run / PIECES)

    def _rescan(self) -> int:
        """Read where the table stands from the folder; returns the last piece merged into trials.parquet."""
        data, merged = _read_base(self.run)
        seqs = [s for s in _piece_seqs(self.run) if s > merged]
        self.next_seq = max([merged, *seqs]) + 1
        self.pending = len(seqs)
        self.table_rows = pq.read_metadata(io.BytesIO(data)).num_rows if data is not None else 0
        return merged

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` as the next piece, then merge the pieces if they are due."""
        if _piece_path(self.run, self.next_seq).exists():  # another writer was here: never overwrite a piece
            self._rescan()
        atomic_write_json(_piece_path(self.run, self.next_seq), [_plain(r) for r in rows], indent=None)
        self.next_seq += 1
        self.pending += 1
        if self.table_rows == 0 or self.pending > max(MIN_PIECES, self.table_rows // GROWTH):
            self.compact()
        else:
            # Two a record: the pieces of one merge are gone before the next merge is due (the next
            # interval is at least as long), and no record waits for a merge's worth of deletions.
            self._delete_merged(2)

    def compact(self) -> None:
        """Merge every piece into ``trials.parquet``; the merged pieces are deleted over the next records."""
        snap = _snapshot(self.run)
        if not snap.pieces:
            return
        df = frame(snap.rows())
        _write_base(self.run, df, snap.last)
        self.merged_pieces += [s for s, _ in snap.pieces]
        self.pending = len([s for s in _piece_seqs(self.run) if s > snap.last])
        self.table_rows = len(df)

    def finish(self) -> None:
        """Merge every piece into ``trials.parquet`` and delete them all (a run that ended)."""
        self.compact()
        self._delete_merged(len(self.merged_pieces))

    def _delete_merged(self, count: int) -> None:
        for s in self.merged_pieces[:count]:
            _piece_path(self.run, s).unlink(missing_ok=True)
        del self.merged_pieces[:count]


@dataclass(frozen=True)
class _Snapshot:
    """``trials.parquet`` (its bytes, the last piece merged into it) and the pieces after it, read together."""

    base: bytes | None
    merged: int
    pieces: list[tuple[int, list[dict[str, Any]]]]

    @property
    def last(self) -> int:
        """The last piece this snapshot includes."""
        return self.pieces[-1][0] if self.pieces else self.merged

    def rows(self) -> list[dict[str, Any]]:
        """Every row, a trial id recorded twice once: at its first place, with its last values."""
        rows: dict[str, dict[str, Any]] = {}
        if self.base is not None:
            for r in pq.read_table(io.BytesIO(self.base)).to_pylist():
                rows[str(r["trial_id"])] = _plain(r)
        for _, piece in self.pieces:
            for r in piece:
                rows[str(r["trial_id"])] = r
        return list(rows.values())

    def to_frame(self) -> pd.DataFrame:
        """The table as one full rewrite of `rows` would have written it."""
        if not self.pieces:
            return pd.read_parquet(io.BytesIO(self.base)) if self.base is not None else empty_frame()
        buf = io.BytesIO()
        frame(self.rows()).to_parquet(buf, index=False)  # what was written is what readers get back
        return pd.read_parquet(io.BytesIO(buf.getvalue()))


def _snapshot(run: Path) -> _Snapshot:
    for _ in range(_READ_ATTEMPTS):
        seqs = _piece_seqs(run)  # before trials.parquet: see the module docstring
        base, merged = _read_base(run)
        try:
            pieces = [(s, _read_piece(run, s)) for s in seqs if s > merged]
        except FileNotFoundError:
            continue  # merged and deleted since the listing: trials.parquet now holds it
        return _Snapshot(base, merged, pieces)
    raise RunError(f"{run / TABLE} kept changing while it was read; try again")


def _read_base(run: Path) -> tuple[bytes | None, int]:
    path = run / TABLE
    try:
        data = path.read_bytes()
        meta = pq.read_schema(io.BytesIO(data)).metadata or {}
        return data, int(meta.get(_MERGED_KEY, -1))
    except FileNotFoundError:
        return None, -1
    except (OSError, ValueError) as e:
        raise RunError(f"{path} is unreadable: {e}") from None


def _write_base(run: Path, df: pd.DataFrame, merged: int) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _MERGED_KEY: str(merged).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(run / TABLE, buf.getvalue())


def _piece_path(run: Path, seq: int) -> Path:
    return run / PIECES / f"{seq:012d}.json"


def _piece_seqs(run: Path) -> list[int]:
    try:
        names = os.listdir(run / PIECES)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_PIECE_NAME.match, names) if m)


def _read_piece(run: Path, seq: int) -> list[dict[str, Any]]:
    path = _piece_path(run, seq)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise RunError(f"{path} is unreadable: {e}") from None


def _remove_pieces(run: Path, upto: int) -> None:
    """Delete the pieces up to ``upto``, oldest first (after a crash midway, those left are still skipped)."""
    for s in _piece_seqs(run):
        if s <= upto:
            with contextlib.suppress(FileNotFoundError):
                _piece_path(run, s).unlink()


def _remove_temporaries(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without empty values: a missing value and None or NaN make the same table."""
    return {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


__all__ = ["BASE_COLUMNS", "GROWTH", "MIN_PIECES", "PIECES", "TABLE", "TrialLog", "append_rows", "empty_frame",
           "frame", "read_table", "replace_table"]
