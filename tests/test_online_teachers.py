"""Online teachers: CRD's periodic teacher evaluation keeping the best teacher, and OMGD's extra
(wide + deep) online teachers whose outputs the output-level terms sum over."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from distill.data import synthesize
from distill.engine.config import load_config
from distill.engine.data import Batch
from distill.engine.device import DeviceContext
from distill.engine.factory import build_method
from distill.engine.loop import run_training
from distill.errors import ConfigError
from distill.losses.omgd import EXTRA_TEACHERS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("online") / "data"
    synthesize("paired", root, num=8, size=32, seed=0, num_test=4)
    return root


def recipe(data: Path, steps: int = 4, **teacher) -> dict:
    return {
        "data": {"root": str(data), "layout": "aligned"},
        "teacher": {"mode": "online", "model": {"arch": "resnet_6blocks", "ngf": 8},
                    "online_discriminator": {"arch": "basic", "ndf": 4, "gan_mode": "lsgan", "conditional": True},
                    "loss": [{"name": "adv", "weight": 1.0}, {"name": "l1_target", "weight": 100.0}], **teacher},
        "student": {"arch": "resnet_6blocks", "ngf": 4},
        "loss": [{"name": "l1_teachers", "weight": 1.0},
                 {"name": "channel_distill", "weight": 1.0, "layers": ["model.9"]}],
        "train": {"steps": steps, "batch_size": 2, "log_every": 1, "device": "cpu", "progress": False},
        "eval": {"num": 4, "batch_size": 4},
    }


def method_for(raw: dict):
    config = load_config(raw=raw)
    return build_method(config, DeviceContext(torch.device("cpu")), {})


def batch(n: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, True)


def test_teacher_selection_keeps_the_better_teacher_and_the_student_distils_from_it(data):
    torch.manual_seed(0)
    m = method_for(recipe(data, eval_every=1))
    first = batch()
    m.setup(first)
    m.build_optimizers()
    # held-out targets made by the teacher as it is now: this teacher scores psnr_gt = 100 (capped)
    x = batch(4, seed=1).real_a
    current = m.teacher.main.model
    with torch.no_grad():
        current.eval()
        y = current(x)
        current.train()
    held_out = [Batch(x, y, True)]
    good = {k: v.clone() for k, v in current.state_dict().items()}
    assert m.teacher.generator is current  # nothing evaluated yet: the current teacher
    logs = m.after_step(1, held_out)
    assert logs["teacher_eval_psnr_gt"] == pytest.approx(100.0)
    assert m.teacher.generator is m.teacher.main.best  # now the best snapshot
    # the teacher gets worse: the snapshot must keep the good weights
    with torch.no_grad():
        for p in current.parameters():
            p.add_(0.5 * torch.randn_like(p))
    logs = m.after_step(2, held_out)
    assert logs["teacher_eval_psnr_gt"] < 100.0 and logs["teacher_best_psnr_gt"] == pytest.approx(100.0)
    assert logs["teacher_best_step"] == 1
    best = m.teacher.generator
    for k, v in best.state_dict().items():
        torch.testing.assert_close(v, good[k])
    # the student's step reads the best teacher's output (and its features), not the current teacher's
    ctx = m._context(first, 2)
    m.forward(ctx, m.student)
    with torch.no_grad():
        torch.testing.assert_close(ctx.teacher_out, best(first.real_a))
        assert not torch.allclose(ctx.teacher_out, current.eval()(first.real_a))
    current.train()
    assert "model.9" in ctx.teacher_feats
    # an evaluation step that is not a multiple of eval_every does nothing
    m.config = m.teacher.config = load_config(raw=recipe(data, eval_every=2))
    assert m.after_step(3, held_out) == {}


def test_teacher_selection_needs_an_online_teacher_and_a_metric(data):
    raw = recipe(data, eval_every=1)
    raw["teacher"] = {"mode": "offline", "eval_every": 1, "checkpoint": "x"}
    with pytest.raises(ConfigError, match="online"):
        method_for(raw)
    with pytest.raises(ConfigError, match="fid"):  # fid without Inception weights: refused before training
        method_for(recipe(data, eval_every=1, eval_metric="fid"))


def test_extra_online_teacher_is_trained_and_summed_over(data, tmp_path):
    torch.manual_seed(0)
    deep = {"name": "deep", "model": {"arch": "resnet_9blocks", "ngf": 4}}
    m = method_for(recipe(data, extra=[deep]))
    first = batch()
    m.setup(first)
    m.build_optimizers()
    assert [u.name for u in m.teacher.units] == ["teacher", "teacher_deep"]
    deep_model = m.teacher.units[1].model
    assert deep_model.slimgan_config["arch"] == "resnet_9blocks"
    assert m.teacher.units[1].discriminator is not m.teacher.discriminator  # its own D, built from the same config
    before = {k: v.clone() for k, v in deep_model.state_dict().items()}
    with torch.no_grad():
        pre_step = deep_model(first.real_a)  # train mode, the weights the teacher step starts from
    logs = m.train_step(first, 0)
    assert "teacher_deep.G_l1_target" in logs and "teacher_deep.D" in logs
    assert any(not torch.equal(before[k], v) for k, v in deep_model.state_dict().items())  # trained online
    # the student's terms see both teachers: l1_teachers = |G_s - G_t,wide| + |G_s - G_t,deep|; the targets
    # are the teachers' train-mode outputs of this step's teacher forward (as the OMGD code)
    ctx = m._context(first, 0)
    m.forward(ctx, m.student)
    (extra,) = ctx.extras[EXTRA_TEACHERS]
    torch.testing.assert_close(extra, pre_step)
    term = m.terms[0]
    expected = F.l1_loss(ctx.student_out, ctx.teacher_out) + F.l1_loss(ctx.student_out, extra)
    torch.testing.assert_close(term(ctx), expected)
    # end to end, with teacher selection: both teachers and their best snapshots are written
    out = tmp_path / "run"
    run_training(load_config(raw=recipe(data, steps=4, extra=[deep], eval_every=2)), out)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    evaluated = {int(r["step"]): r for r in rows if r.get("teacher_eval_psnr_gt")}
    assert sorted(evaluated) == [2, 4] and all(r.get("teacher_deep_eval_psnr_gt") for r in evaluated.values())
    for name in ("teacher", "teacher_deep", "teacher_best", "teacher_deep_best", "student"):
        assert (out / name / "model.safetensors").is_file()
    assert "resnet_9blocks" in (out / "teacher_deep_best" / "config.json").read_text()
    # teacher_best/ holds the kept snapshot: the tensors state.pt restores on resume
    state = torch.load(out / "state.pt", weights_only=True)
    saved = load_file(out / "teacher_best" / "model.safetensors")
    for k, v in state["modules"]["teacher_best"].items():
        if k in saved:
            torch.testing.assert_close(saved[k], v)
    best_step = int(state["modules"]["teacher_selection"]["best_step"])
    assert best_step in (2, 4) and float(evaluated[4]["teacher_best_step"]) == best_step
    with pytest.raises(ConfigError, match="model.arch"):
        method_for(recipe(data, extra=[{"name": "deep"}]))
