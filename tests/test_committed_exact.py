"""The committed training-free artefacts (Fig. 2, the theory numbers) are what the code computes now:
each is recomputed into a temporary folder and compared with ``results/`` number by number."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _numbers_equal(a, b, path="") -> list[str]:
    """Where two JSON trees differ (numbers to 1e-6 relative; timings and wall clocks are left out)."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = [f"{path}/{k}: missing on one side" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            if not any(t in k for t in ("seconds", "wall", "time_s")):
                diffs += _numbers_equal(a[k], b[k], f"{path}/{k}")
        return diffs
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} entries"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _numbers_equal(x, y, f"{path}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        ok = math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
        return [] if ok else [f"{path}: committed {a} vs now {b}"]
    return [] if a == b else [f"{path}: committed {a!r} vs now {b!r}"]


@pytest.mark.parametrize("artefact", ["fig2", "theory"])
def test_committed_exact_artefact_matches_the_code(tmp_path, artefact):
    committed = REPO / "results" / artefact / "numbers.json"
    if not committed.exists():
        pytest.skip(f"no committed results/{artefact}")
    r = subprocess.run([sys.executable, "-m", "numnet.reproduce", artefact, "--results", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    diffs = _numbers_equal(json.loads(committed.read_text()), json.loads((tmp_path / artefact / "numbers.json").read_text()))
    assert not diffs, f"results/{artefact} is stale (rerun make reproduce-{artefact}): " + "; ".join(diffs[:5])
