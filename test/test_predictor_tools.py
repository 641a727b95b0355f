"""The predictor's CLI verbs: make-tiny-model, bench, fetch-model."""

from __future__ import annotations

import re

from predictor_fixtures import tiny_model

from depth_ft_ros.cli import main
from depth_ft_ros.model.predictor import DepthFtPredictor


def test_make_tiny_model_verb(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["make-tiny-model", str(out), "--family", "lotus-g-normals", "--seed", "2"]) == 0
    assert str(out) in capsys.readouterr().out
    assert DepthFtPredictor.from_pretrained(out).family == "lotus-g-normals"


def test_bench_verb_reports_stages_and_the_diffusers_ratio(capsys):
    argv = ["bench", "--resolution", "64", "--runs", "2", "--width", "80", "--height", "60"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for stage in ("preprocess", "encode", "unet", "decode", "postprocess", "total"):
        assert re.search(rf"^\s+{stage}\s+\d+\.\d ms$", out, re.MULTILINE), out
    ratio = re.search(r"ratio ours/diffusers (\d+\.\d+)\s+\(max \|output difference\| (\S+)\)", out)
    assert ratio, out
    assert float(ratio.group(2)) < 1e-5  # same weights, same answer


def test_bench_verb_on_lotus_normals_has_no_diffusers_reference(capsys):
    model = str(tiny_model("lotus-d-normals"))
    argv = ["bench", "--model", model, "--resolution", "32", "--runs", "1", "--width", "40", "--height", "30"]
    assert main(argv) == 0
    assert "n/a: no diffusers pipeline" in capsys.readouterr().out


def test_bench_verb_on_marigold_normals_matches_diffusers(capsys):
    # prs-eth Marigold: 4 steps from the predictor's fixed-seed Gaussian latent, given to diffusers too.
    model = str(tiny_model("marigold-normals"))
    argv = ["bench", "--model", model, "--resolution", "64", "--runs", "1", "--width", "64", "--height", "48"]
    assert main(argv) == 0
    difference = re.search(r"max \|output difference\| (\S+)\)", capsys.readouterr().out)
    assert difference and float(difference.group(1)) < 1e-3  # normals: see test_predictor_speed_paths


def test_bench_verb_on_e2e_ft_normals_says_why_it_differs_from_diffusers(capsys):
    model = str(tiny_model("e2e-ft-normals"))
    argv = ["bench", "--model", model, "--resolution", "64", "--runs", "1", "--width", "64", "--height", "48"]
    assert main(argv) == 0
    assert "read out as its authors do" in capsys.readouterr().out


def test_fetch_model_verb_refuses_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["fetch-model", "GonzaloMG/marigold-e2e-ft-depth"]) == 1
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
