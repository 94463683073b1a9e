"""Writing a results folder: ``table.md`` with a provenance section, and ``PROVENANCE.json``."""
from __future__ import annotations

from pathlib import Path

from numnet.runs import write_json_atomic

__all__ = ["write_artefact"]


def write_artefact(out: Path, lines: list[str], prov: dict) -> None:
    """Append the provenance section to ``lines`` and write both files into ``out``."""
    m = prov.get("machine", {})
    lines = lines + ["## Provenance", "", f"- git_commit: `{prov.get('git_commit')}`",
                     f"- machine: `{m.get('cpu')}`, {m.get('cpu_count')} cores, torch {m.get('torch')}"]
    lines += [f"- {k}: {v}" for k, v in prov.items() if k not in ("git_commit", "machine", "time_utc")]
    lines += [f"- generated (UTC): {prov.get('time_utc')}", ""]
    (out / "table.md").write_text("\n".join(lines))
    write_json_atomic(out / "PROVENANCE.json", prov)
