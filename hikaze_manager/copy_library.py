"""``python -m hikaze_manager.copy_library``: move a SQLite library into a shared PostgreSQL one.

Copies the data folder's database and pictures (the folder itself is never changed), verifies
the copy and prints what was added, what was there already and what differed. Exit status 0
when every table verified, 1 otherwise. Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .db.pg import redact
from .db.stores import default_machine_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; options not given fall back to ``HIKAZE_*`` variables."""
    parser = argparse.ArgumentParser(
        prog="python -m hikaze_manager.copy_library",
        description="Copy a SQLite library (database and pictures) into a PostgreSQL library, "
                    "verify it, and report. The source folder is only read.")
    parser.add_argument("--data-dir", required=True, metavar="DIR",
                        help="the SQLite library's data folder (holds hikaze_model_manager.db)")
    parser.add_argument("--database-url", default=os.environ.get("HIKAZE_DATABASE_URL"),
                        metavar="URL", help="postgresql://user:password@host:port/db "
                                            "(default $HIKAZE_DATABASE_URL)")
    parser.add_argument("--machine-name", default=os.environ.get("HIKAZE_MACHINE_NAME"),
                        metavar="NAME", help="the machine whose paths these are (default: "
                                             "$HIKAZE_MACHINE_NAME, else the host name)")
    parser.add_argument("--target-data-dir", default=None, metavar="DIR",
                        help="the data folder the PostgreSQL server of this machine will use, "
                             "when it is not --data-dir: pending pictures are copied there")
    parser.add_argument("--dry-run", action="store_true",
                        help="do and verify everything in a transaction, then roll it back")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or $HIKAZE_DATABASE_URL) is required")
    return args


def format_report(report) -> str:
    """The report as the table this command prints."""
    head = ("table", "source", "added", "filled", "already", "differed", "skipped", "target",
            "checksum", "verified")
    rows = [head]
    for t in report.tables:
        same = "= source" if t.target_checksum == t.source_checksum else "merged"
        rows.append((t.name, t.source_rows, t.added, t.filled, t.unchanged, t.differed,
                     t.skipped, "-" if t.target_rows is None else t.target_rows,
                     f"{t.target_checksum[:12]} {same}", "yes" if t.verified else "NO"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = [
        f"{'Dry run: nothing was written. Would copy' if report.dry_run else 'Copied'} "
        f"{report.source} (schema version {report.source_version}) into "
        f"{report.target} as machine {report.machine!r}",
        "",
    ]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    files = report.pending_files
    if any(files.values()):
        lines.append(f"pending pictures: {files['copied']} copied, {files['already']} already "
                     f"there, {files['conflicts']} kept (another file of that name is there)")
    if report.differences:
        lines += ["", "Kept in the PostgreSQL library (the source differs):"]
        lines += [f"  {d.table} {d.key} {d.field}: kept {d.kept!r}, source {d.source!r}"
                  for d in report.differences]
        if report.differences_omitted:
            lines.append(f"  ... and {report.differences_omitted} more")
    lines += [""] + [f"problem: {p}" for p in report.problems]
    lines.append(("Verified." if report.verified else "NOT verified.")
                 + f" {report.added} row(s) and picture(s) added or filled.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the copy; print the report; 0 when verified, 1 otherwise."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .services.store_copy import CopyError, copy_library

    try:
        report = copy_library(args.data_dir, args.database_url,
                              args.machine_name or default_machine_name(), dry_run=args.dry_run,
                              target_data_dir=args.target_data_dir)
    except CopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc} (target {redact(args.database_url)})", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0 if report.verified else 1


if __name__ == "__main__":
    sys.exit(main())
