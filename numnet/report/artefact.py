"""Writing a results folder: ``table.md`` with a provenance section, and ``PROVENANCE.json``; the command line
that every report module shares (:func:`report_main`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from numnet.runs import write_json_atomic

__all__ = ["write_artefact", "report_main"]


def report_main(argv: list[str] | None, description: str, default: str, write: Callable[[str], object],
                wrote: Callable[[str, object], str]) -> int:
    """``python -m numnet.report.<module> [folder]``: ``write(folder)`` (``default`` when none is given), then one
    line ``wrote <wrote(folder, result)>``; a missing results folder is one line on stderr and exit status 2."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("folder", nargs="?", default=default)
    args = ap.parse_args(argv)
    try:
        result = write(args.folder)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[numnet] wrote {wrote(args.folder, result)}")
    return 0


def write_artefact(out: Path, lines: list[str], prov: dict) -> None:
    """Append the provenance section to ``lines`` and write both files into ``out``."""
    m = prov.get("machine", {})
    lines = lines + ["## Provenance", "", f"- git_commit: `{prov.get('git_commit')}`",
                     f"- machine: `{m.get('cpu')}`, {m.get('cpu_count')} cores, torch {m.get('torch')}"]
    lines += [f"- {k}: {v}" for k, v in prov.items() if k not in ("git_commit", "machine", "time_utc")]
    lines += [f"- generated (UTC): {prov.get('time_utc')}", ""]
    (out / "table.md").write_text("\n".join(lines))
    write_json_atomic(out / "PROVENANCE.json", prov)
