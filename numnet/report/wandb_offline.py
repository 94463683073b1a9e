"""Read an offline wandb run back without a network: config, per-step history and summary.

A ``run-<id>.wandb`` file is wandb's transaction log: a 7-byte header (``:W&B``, magic, version)
followed by 32 KiB blocks of records, each with a 7-byte header (CRC32, little-endian length,
type: 1 full, 2 first, 3 middle, 4 last) and a protobuf ``Record`` from wandb's own
``wandb_internal_pb2``. This reader is used by the tests to show that metrics reach the run.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

__all__ = ["read_offline_run"]

_BLOCK = 32768
_HEADER = 7


def _records(data: bytes):
    if data[:4] != b":W&B":
        raise ValueError("not a wandb transaction log (missing ':W&B' header)")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            pos += left  # zero padding up to the next block
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def _items(items) -> dict[str, Any]:
    """Items to a dict; nested keys (images, tables: ``["test/signal", "width"]``) become nested dicts."""
    out: dict[str, Any] = {}
    for it in items:
        path = [it.key] if it.key else list(it.nested_key)
        try:
            value = json.loads(it.value_json)
        except ValueError:
            value = it.value_json
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """``{"config", "history", "summary", "tags", "group", "name"}`` of an ``offline-run-*`` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {str(run_dir)!r}")
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for raw in _records(files[0].read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            meta = {"tags": list(rec.run.tags), "group": rec.run.run_group, "name": rec.run.display_name}
            config.update(_items(rec.run.config.update))
        elif kind == "config":
            config.update(_items(rec.config.update))
        elif kind == "history":
            history.append(_items(rec.history.item))
        elif kind == "summary":
            summary.update(_items(rec.summary.update))
    config = {k: (v.get("value", v) if isinstance(v, dict) and set(v) <= {"value", "desc"} else v)
              for k, v in config.items()}
    return {"config": config, "history": history, "summary": summary, **meta}
