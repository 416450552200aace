"""Durable appends of whole lines to JSONL files (the dead letters, the registry's ``HISTORY``, the
incoming streams).

Every append is whole lines in one ``write`` followed by ``fsync``. An append that fails (a full disk)
cuts its partial bytes off again; if even that fails they stay in the file, and the next append to
the file (:func:`append_lines`) first ends them with a newline: a torn tail -- of a failed append or
of a crash -- stays a line of its own that readers skip, and never swallows the lines after it.
"""

from __future__ import annotations

import os
from pathlib import Path


class TornAppend(OSError):
    """An append failed and its partial bytes could not be cut off again: they stay in the file."""


def append_or_cut(fd: int, data: bytes, size: int) -> None:
    """Write all of ``data`` to the end of ``fd`` (a file of ``size`` bytes, opened for appending) and
    fsync; on failure (a full disk) truncate the file back to ``size`` and raise the ``OSError``, or
    :class:`TornAppend` if even that fails. A JSONL file so never keeps half a line of a failed append
    that the next append would glue itself onto."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as err:
        try:
            os.ftruncate(fd, size)
        except OSError as cut:
            raise TornAppend(err.errno, f"{err.strerror}; its partial bytes stay in the file ({cut})") from err
        raise


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a file just created or renamed there) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_lines(path: Path, data: bytes) -> None:
    """Append ``data`` (whole lines, each ending with a newline) to ``path``, creating it: one write,
    then fsync (and the directory's fsync when the file is new). A last line without its newline (a
    crash, or a failed append whose bytes could not be cut) is ended first, so it stays a line of its
    own. Raises the ``OSError`` of a failed append after cutting its bytes off (:func:`append_or_cut`)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        append_or_cut(fd, b"\n" + data if torn else data, size)
    finally:
        os.close(fd)
    if size == 0:
        fsync_dir(path.parent)
