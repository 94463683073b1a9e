"""One run summary type for complete and failed runs; the fallbacks for older records live in it alone."""
import json

from numnet.summary import RunSummary, read_summaries


def test_complete_and_failed_runs_share_the_fields(tmp_path):
    complete = {"status": "complete", "name": "a", "model": "symresnet", "activation": "relu", "depth": 3,
                "channels": 1, "shared": True, "normalisation": "paper", "seed": 0, "params": 5, "profile": "quick",
                "metrics": {"val_psnr": 30.0, "test_psnr": 30.5}, "epochs": 4, "wall_s": 2.0,
                "wall_s_total": 5.0, "resumed": True, "dataset": {"n_test": 10}, "history": [{"epoch": 0}],
                "config": {}, "provenance": {"git_commit": "abc"}}
    # a failed run recorded before failed summaries carried their identifying fields: those come from its config
    failed = {"status": "failed", "reason": "FloatingPointError: loss is nan",
              "config": {"model": {"name": "resnet", "depth": 7, "channels": 1, "shared": False},
                         "activation": {"name": "charbonnier"}, "profile": {"name": "quick"}, "seed": 2}}
    for name, rec in (("a", complete), ("b", failed)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(rec))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "summary.json").write_text("{not json")
    a, b, c = read_summaries(tmp_path)
    assert a.complete and a.wall_s == 5.0 and not a.wall_partial and a.commit == "abc" and a.history == [{"epoch": 0}]
    assert (b.status, b.model, b.activation, b.depth, b.shared, b.seed, b.profile) == \
        ("failed", "resnet", "charbonnier", 7, False, 2, "quick")
    assert b.metrics == {} and b.normalisation is None and "nan" in b.reason  # ResNet does not normalise
    assert c.status == "unreadable" and c.run == "c" and c.reason


def test_older_records_read_as_they_trained(tmp_path):
    # before model.normalisation existed the symmetric networks trained with the provable rule
    old = RunSummary.from_dict({"status": "complete", "model": "symresnet",
                                "config": {"model": {"name": "symresnet", "depth": 2}}, "metrics": {"test_psnr": 1.0}})
    assert old.normalisation == "provable" and old.depth == 2
    # a resumed run that recorded only its last sitting says so
    assert RunSummary.from_dict({"status": "complete", "resumed": True, "wall_s": 3.0}).wall_partial
    # a classical filter: its explicit steps, no depth, seed or sharing, no normalisation
    c = RunSummary.from_dict({"status": "complete", "model": "classical", "depth": 40, "seed": 0, "shared": True,
                              "classical": {"steps": 40}, "normalisation": "paper"})
    assert (c.steps, c.depth, c.seed, c.shared, c.normalisation) == (40, None, None, None, None)
    # the pooled PSNR of a later evaluation beside the summary
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text(json.dumps({"status": "complete", "metrics": {"test_psnr": 30.0}}))
    (tmp_path / "r" / "evaluation.json").write_text(json.dumps({"test_psnr_pooled": 29.5}))
    assert RunSummary.read(tmp_path / "r" / "summary.json").metrics == {"test_psnr": 30.0, "test_psnr_pooled": 29.5}
