"""Every config composes and builds its model; invalid values fail before compute with a clear message."""
import os
from pathlib import Path

import pytest
from omegaconf import open_dict

from numnet.config import ConfigError, choices, compose_config, validate
from numnet.models import build_model
from numnet.train import model_kwargs

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("model", choices("model"))
@pytest.mark.parametrize("activation", choices("activation"))
def test_model_activation_configs_compose_and_build(model, activation):
    cfg = compose_config(f"model={model}", f"activation={activation}", "profile=smoke")
    validate(cfg)
    net = build_model(cfg.model.name, **model_kwargs(cfg))
    assert net.depth == cfg.model.depth and net.n_params() > 0


@pytest.mark.parametrize("group", ["profile", "logger", "trainer", "experiment", "task"])
def test_group_configscompose_config(group):
    names = choices(group)
    assert names, f"configs/{group} is empty"
    for name in names:
        if group == "trainer" and name == "gpu":
            cfg = compose_config(f"{group}={name}")
            assert cfg.trainer.accelerator == "gpu"
            continue
        cfg = compose_config(f"{group}={name}")
        validate(cfg)


def test_keys_depth_channels_shared():
    cfg = compose_config("model=fsi", "model.depth=20", "model.channels=16", "model.shared=false")
    net = build_model(cfg.model.name, **model_kwargs(cfg))
    assert (net.depth, net.channels, net.shared) == (20, 16, False)
    assert net.w.shape == (20, 16, 16, 3)


def test_profiles_match_the_paper_protocol():
    paper = compose_config("profile=paper").profile
    assert (paper.n_train, paper.n_val, paper.n_test, paper.max_epochs, paper.lr) == (10000, 1000, 1000, 2000, 1e-3)
    assert len(paper.seeds) > 1


@pytest.mark.parametrize(
    "override,match",
    [
        ("model.depth=0", "model.depth must be an integer >= 1"),
        ("model.channels=0", "model.channels must be an integer >= 1"),
        ("activation.lam=-1", "activation.lam must be > 0"),
        ("activation.lam=0", "activation.lam must be > 0"),
        ("profile.lr=0", r"task\.lr\) must be > 0"),
        ("model.tau_init=3.0", r"model.tau_init must lie in \(0, 2/L\)"),
        ("threads=0", "threads must be an integer >= 1"),
    ],
)
def test_invalid_values_raise_clear_errors(override, match):
    cfg = compose_config(override)
    with pytest.raises(ConfigError, match=match):
        validate(cfg)


def test_invalid_fsi_and_dufort_frankel_weights():
    with pytest.raises(ConfigError, match=r"alpha_init .*\(0, 2\)"):
        validate(compose_config("model=fsi", "model.alpha_init=2.5"))
    with pytest.raises(ConfigError, match="L/4"):
        validate(compose_config("model=dufort_frankel", "model.alpha_init=0.1"))


def test_unknown_model_name_in_config_lists_choices():
    cfg = compose_config()
    with open_dict(cfg):
        cfg.model.name = "densenet"
    with pytest.raises(ConfigError, match="resnet"):
        validate(cfg)


@pytest.mark.cli
@pytest.mark.parametrize("args,message", [
    (["activation=foo"], "activation=foo is unknown; choose one of ['charbonnier', 'perona_malik', 'relu']"),
    (["profile=nonexistent"], "profile=nonexistent is unknown; choose one of"),
    (["model.dpeth=3"], "unknown key model.dpeth (did you mean model.depth?)"),
    (["lr=-1"], "unknown key lr (did you mean task.lr or profile.lr?)"),
    (["profile.lr=-1", "logger=none"], "profile.lr (the Adam learning rate, task.lr) must be > 0, got -1"),
])
def test_cli_errors_are_one_line_and_leave_no_run_folder(tmp_path, args, message):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "numnet.train", f"output_root={tmp_path}", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, WANDB_MODE="disabled"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {message}" or (r.stderr.strip().startswith("error: ") and message in r.stderr
                                                       and r.stderr.strip().count("\n") == 0)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not (tmp_path / "adhoc" / "runs").exists() or not any((tmp_path / "adhoc" / "runs").iterdir())


def test_every_artefact_is_defined_by_its_experiment_file():
    """``numnet.reproduce`` finds each sweep artefact in one experiment file: its grid, folder, default profile,
    seeds and report (which resolves to a function); the paper-protocol variants inherit their figure's grid."""
    from numnet.config import choices, compose_config
    from numnet.reproduce import _report, experiments, scripted

    arts = experiments()
    assert {"fig5", "fig6", "fig7", "fig7-paper", "fig5-paper", "fig6-paper", "early-stop"} <= set(arts)
    for art, stem in arts.items():
        cfg = compose_config(f"experiment={stem}", return_hydra_config=True)
        rep = cfg.reproduce
        assert cfg.artefact == art and str(cfg.hydra.sweep.dir).endswith(f"{art}/runs")
        assert rep.profile in choices("profile") and callable(_report(rep.report))
        assert rep.seeds is None or all(isinstance(s, int) for s in rep.seeds)
        assert rep.record_rule in (None, "reject", "keep")
    for fig in ("fig5", "fig6"):
        base = compose_config(f"experiment={fig}", return_hydra_config=True)
        paper = compose_config(f"experiment={fig}_paper", return_hydra_config=True)
        assert paper.hydra.sweeper.params == base.hydra.sweeper.params and paper.reproduce.profile == "paper"
        assert paper.reproduce.report == base.reproduce.report and paper.model == base.model
    assert {"fig2", "theory", "fig9", "kernels", "stability"} <= set(scripted())  # the artefacts without a grid


def test_reproduce_refuses_bad_seeds_before_any_compute(tmp_path, capsys):
    from numnet.reproduce import main

    assert main(["fig7-paper", "--seeds", "0,x", "--results", str(tmp_path), "--logger", "none"]) == 2
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
