"""The teacher side of the generator method: the strategies chosen from teacher.mode, the online CycleGAN
teacher (its cycle objective by hand, D̄ updated with the teacher and frozen for the student, selection),
and the fidelity options (train-mode targets, stage-gated D̄, fixed EBM learning rate, config-time checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distill import create_model, save_checkpoint
from distill.data import synthesize
from distill.engine.builders import build_discriminator
from distill.engine.config import DiscriminatorConfig, load_config
from distill.engine.data import Batch
from distill.engine.device import DeviceContext
from distill.engine.factory import build_method, check_method
from distill.engine.gan import ImagePool
from distill.engine.loop import run_training
from distill.engine.teachers import CycleTeacher, NoTeacher, OfflineTeacher, OnlineTeachers, TermsTeacher
from distill.errors import ConfigError
from distill.losses.adversarial import generator_loss

CPU = DeviceContext(torch.device("cpu"))
TRAIN = {"steps": 4, "batch_size": 1, "log_every": 1, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("side") / "unpaired"
    synthesize("unpaired", root, num=4, size=32, seed=0, num_test=2)
    return root


def cycle_recipe(data: Path, **teacher) -> dict:
    """CRD with an online CycleGAN teacher, at test size."""
    return {
        "data": {"root": str(data), "layout": "unaligned", "load_size": 16, "crop_size": 16},
        "teacher": {"mode": "online", "model": {"arch": "resnet_6blocks", "ngf": 4},
                    "online_discriminator": {"arch": "n_layers", "ndf": 4, "kwargs": {"n_layers": 1}, "gan_mode": "lsgan"},
                    "cyclegan": {}, **teacher},
        "student": {"arch": "resnet_6blocks", "ngf": 2},
        "loss": [{"name": "crd", "weight": 25.0}, {"name": "teacher_adv", "weight": 1.0}],
        "train": dict(TRAIN),
        "eval": {"num": 2, "batch_size": 2},
    }


def unpaired_batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(1, 3, 16, 16, generator=g) * 2 - 1, torch.rand(1, 3, 16, 16, generator=g) * 2 - 1, False)


def ready(raw: dict, paths: dict | None = None, batch: Batch | None = None):
    m = build_method(load_config(raw=raw), CPU, paths or {})
    m.setup(batch or unpaired_batch())
    m.build_optimizers()
    return m


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_cyclegan_teacher_objective_matches_a_hand_computation(unpaired):
    torch.manual_seed(0)
    m = ready(cycle_recipe(unpaired))
    assert isinstance(m.teacher, OnlineTeachers) and isinstance(m.teacher.main, CycleTeacher)
    pair = m.teacher.main.pair
    b = unpaired_batch(1)
    a, real_b = b.real_a, b.real_b
    with torch.no_grad():  # InstanceNorm generators: the same output in either mode
        fake_b, fake_a = pair.g_a(a), pair.g_b(real_b)
        hand = {
            "cycle_A": (pair.g_b(fake_b) - a).abs().mean().item(),  # |G_B(G_A(a)) - a|₁
            "cycle_B": (pair.g_a(fake_a) - real_b).abs().mean().item(),  # |G_A(G_B(b)) - b|₁
            "idt_A": (pair.g_a(real_b) - real_b).abs().mean().item(),
            "idt_B": (pair.g_b(a) - a).abs().mean().item(),
            "GAN_A": ((pair.d_a(fake_b) - 1) ** 2).mean().item(),  # LSGAN generator loss
        }
    logs = m.train_step(b, 0)
    for k, v in hand.items():
        assert logs[f"teacher.{k}"] == pytest.approx(v, rel=1e-5), k
    total = (logs["teacher.GAN_A"] + logs["teacher.GAN_B"] + 10 * (hand["cycle_A"] + hand["cycle_B"])
             + 10 * 0.5 * (hand["idt_A"] + hand["idt_B"]))
    assert logs["teacher.G_total"] == pytest.approx(total, rel=1e-5)
    # the student's target is G_A(x) of that teacher forward (train mode), not a second forward
    torch.testing.assert_close(m.teacher.main.last[0], fake_b)


def test_online_d_bar_is_updated_with_the_teacher_and_frozen_for_the_student(unpaired):
    torch.manual_seed(0)
    m = ready(cycle_recipe(unpaired))
    d_bar = m.teacher.discriminator
    assert d_bar is m.teacher.main.pair.d_a  # D_A judges B images, as the student's outputs are
    student_opt = {id(p) for g in m.optimizers()["G"].param_groups for p in g["params"]}
    assert not student_opt & {id(p) for p in d_bar.parameters()}
    b = unpaired_batch(2)
    before = state(d_bar)
    m.teacher.train_step(b, 0)  # "updating": D_A learns with the teacher
    updated = state(d_bar)
    assert any(not torch.equal(before[k], updated[k]) for k in before)
    grads = [p.grad.clone() for p in d_bar.parameters()]
    # "freezing": the student's step back-propagates through D̄ into G_s only
    ctx = m._context(b, 0)
    m.forward(ctx, m.student)
    adv = next(t for t in m.terms if t.name == "teacher_adv")
    value = adv(ctx)
    with torch.no_grad():
        assert float(value) == pytest.approx(float(generator_loss(d_bar(ctx.student_out), "lsgan")), rel=1e-5)
    m.rt.optimize(sum(t.weight * t(ctx) for t in m.terms), m.optimizers()["G"])
    # its weights are untouched (BatchNorm running statistics still follow the batches D̄ sees)
    assert all(torch.equal(updated[k], p) for k, p in d_bar.named_parameters())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, d_bar.parameters(), strict=True))
    assert all(not p.requires_grad for p in d_bar.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.student.parameters())


def test_cyclegan_teacher_run_writes_the_teacher_and_the_selected_one(unpaired, tmp_path):
    out = tmp_path / "run"
    raw = cycle_recipe(unpaired, eval_every=2, eval_metric="cycle_psnr")
    raw["train"]["steps"] = 3
    run_training(load_config(raw=raw), out)
    for name in ("student", "teacher", "teacher_generator_b", "teacher_discriminator", "teacher_discriminator_b",
                 "teacher_best"):
        assert (out / name / "model.safetensors").is_file(), name
    d_bar = json.loads((out / "teacher_discriminator" / "config.json").read_text())
    assert d_bar["provenance"]["gan_mode"] == "lsgan" and d_bar["provenance"]["conditional"] is False
    saved = torch.load(out / "state.pt", weights_only=True)
    assert int(saved["modules"]["teacher_selection"]["best_step"]) in (2, 3)  # evaluated at 2 and at the end
    assert int(saved["modules"]["teacher"]["pool_b.count"]) == 3  # the history pool holds the 3 fakes seen
    with pytest.raises(ConfigError, match="cycle_psnr"):  # psnr_gt needs paired data
        check_method(load_config(raw=cycle_recipe(unpaired, eval_every=2, eval_metric="psnr_gt")))


def test_image_pool_returns_history_once_full():
    torch.manual_seed(0)
    pool = ImagePool(2)
    first, second = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    assert torch.equal(pool.query(first), first) and torch.equal(pool.query(second), second)  # filling
    seen = {float(pool.query(torch.full((1, 1, 2, 2), 5.0)).mean()) for _ in range(20)}
    assert 5.0 in seen and seen & {0.0, 1.0}  # half the time an older image comes back
    assert torch.equal(ImagePool(0).query(first), first)


def test_strategies_are_chosen_from_teacher_mode(unpaired, tmp_path):
    paired = tmp_path / "paired"
    synthesize("paired", paired, num=2, size=32, seed=0, num_test=2)
    teacher = create_model("resnet_6blocks", ngf=4)
    save_checkpoint(teacher, tmp_path / "g")
    d = build_discriminator(DiscriminatorConfig(arch="basic", ndf=4, gan_mode="hinge", conditional=True), teacher)
    save_checkpoint(d, tmp_path / "d", provenance=d.slimgan_provenance)
    base = {"data": {"root": str(paired), "layout": "aligned"}, "student": {"arch": "resnet_6blocks", "ngf": 4},
            "train": dict(TRAIN)}
    none = build_method(load_config(raw={**base, "teacher": {"mode": "none"}, "loss": [{"name": "l1_target"}]}), CPU, {})
    assert type(none.teacher) is NoTeacher and none.teacher.generator is None
    offline = build_method(load_config(raw={**base, "loss": [{"name": "l1_teacher"}, {"name": "teacher_adv"}],
                                            "teacher": {"checkpoint": str(tmp_path / "g")}}), CPU,
                           {"teacher": tmp_path / "g", "teacher_discriminator": tmp_path / "d"})
    side = offline.teacher
    assert isinstance(side, OfflineTeacher) and not side.generator.training
    assert (side.gan_mode, side.conditional) == ("hinge", True)  # read from D̄'s own checkpoint
    assert all(not p.requires_grad for p in [*side.generator.parameters(), *side.discriminator.parameters()])
    online = build_method(load_config(raw={**base, "loss": [{"name": "l1_teacher"}], "teacher": {
        "mode": "online", "model": {"arch": "resnet_6blocks", "ngf": 4}, "loss": [{"name": "l1_target"}]}}), CPU, {})
    assert isinstance(online.teacher.main, TermsTeacher) and online.teacher.generator is online.teacher.main.model
    # a D̄ whose checkpoint records no objective (an imported reference D) needs it stated
    save_checkpoint(d, tmp_path / "d_plain")
    raw = {**base, "loss": [{"name": "teacher_adv"}], "teacher": {"use_generator": False}}
    with pytest.raises(ConfigError, match="discriminator_gan_mode"):
        build_method(load_config(raw=raw), CPU, {"teacher_discriminator": tmp_path / "d_plain"})
    raw["teacher"]["discriminator_gan_mode"] = "vanilla"
    assert build_method(load_config(raw=raw), CPU, {"teacher_discriminator": tmp_path / "d_plain"}).teacher.gan_mode == "vanilla"


def test_train_mode_targets_are_switchable(tmp_path):
    paired = tmp_path / "paired"
    synthesize("paired", paired, num=2, size=32, seed=0, num_test=2)
    batch_norm = {"arch": "resnet_6blocks", "ngf": 4, "kwargs": {"norm": "batch"}}

    def method(target_mode: str):
        torch.manual_seed(0)
        raw = {"data": {"root": str(paired), "layout": "aligned"}, "student": {"arch": "resnet_6blocks", "ngf": 4},
               "teacher": {"mode": "online", "model": batch_norm, "loss": [{"name": "l1_target"}],
                           "target_mode": target_mode},
               "loss": [{"name": "l1_teacher"}], "train": dict(TRAIN)}
        return ready(raw, batch=batch)

    g = torch.Generator().manual_seed(3)
    batch = Batch(torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, True)
    train, evaluation = method("train"), method("eval")
    for m in (train, evaluation):
        m.teacher.train_step(batch, 0)
    ctx_t, ctx_e = train._context(batch, 0), evaluation._context(batch, 0)
    train.forward(ctx_t, train.student)
    evaluation.forward(ctx_e, evaluation.student)
    torch.testing.assert_close(ctx_t.teacher_out, train.teacher.main.last[0])  # batch statistics, this step's forward
    teacher = evaluation.teacher.main.model
    with torch.no_grad():
        torch.testing.assert_close(ctx_e.teacher_out, teacher.eval()(batch.real_a))  # running statistics
    assert not torch.allclose(ctx_t.teacher_out, ctx_e.teacher_out, atol=1e-3)
    with pytest.raises(ConfigError, match="target_mode"):
        check = {"data": {"root": str(paired)}, "student": {"arch": "resnet_6blocks", "ngf": 4}, "loss": [{"name": "tv"}],
                 "teacher": {"mode": "online", "model": batch_norm, "loss": [{"name": "l1_target"}], "target_mode": "x"}}
        build_method(load_config(raw=check), CPU, {})


def test_offline_d_bar_updates_only_in_stage_two_and_lr_schedules(tmp_path):
    folder = tmp_path / "scenes"
    synthesize("unconditional", folder, num=4, size=32, seed=0, num_test=2)
    teacher = create_model("dcgan", ngf=4, nz=8, image_size=32)
    d = build_discriminator(DiscriminatorConfig(arch="dcgan_discriminator", ndf=4, gan_mode="vanilla"), teacher)
    save_checkpoint(d, tmp_path / "d", provenance=d.slimgan_provenance)
    raw = {"data": {"root": str(folder), "layout": "folder"},
           "teacher": {"use_generator": False, "discriminator": str(tmp_path / "d"), "train_discriminator": True},
           "student": {"arch": "dcgan", "ngf": 4, "kwargs": {"nz": 8, "image_size": 32}},
           "discriminator": {"arch": "dcgan_discriminator", "ndf": 4, "gan_mode": "vanilla"},
           "loss": [{"name": "adv"}, {"name": "dgl_gan", "weight": 0.1, "start": 2}], "train": {**TRAIN, "batch_size": 2}}
    m = build_method(load_config(raw=raw), CPU, {"teacher_discriminator": tmp_path / "d"})
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(2, 8, generator=g), torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, False)
    m.setup(batch)
    m.build_optimizers()
    d_bar = m.teacher.discriminator
    before = state(d_bar)
    for step in (0, 1):  # stage I: D̄ is not trained, though train_discriminator is set
        assert "D_teacher" not in m.train_step(batch, step)
    assert all(torch.equal(before[k], v) for k, v in d_bar.state_dict().items())
    assert "D_teacher" in m.train_step(batch, 2)  # stage II: updated (Eq. 6)
    assert any(not torch.equal(before[k], v) for k, v in d_bar.state_dict().items())
    # DGL-GAN keeps a constant learning rate; VEM's energy network keeps its own fixed Adam lr
    out = tmp_path / "run"
    raw["train"] = {**TRAIN, "batch_size": 2, "steps": 3, "lr_policy": "constant"}
    run_training(load_config(raw=raw), out)
    saved = torch.load(out / "state.pt", weights_only=True)
    assert saved["schedulers"]["G"]["_last_lr"][0] == pytest.approx(2e-4)


def test_vem_energy_net_keeps_a_fixed_learning_rate(tmp_path):
    paired = tmp_path / "paired"
    synthesize("paired", paired, num=2, size=32, seed=0, num_test=2)
    raw = {"data": {"root": str(paired), "layout": "aligned"}, "teacher": {"mode": "none"},
           "student": {"arch": "resnet_6blocks", "ngf": 4},
           "loss": [{"name": "l1_target"}, {"name": "vem", "weight": 0.1, "channels": 2, "langevin_steps": 1}],
           "train": {**TRAIN, "steps": 2, "decay_start": 0}}
    out = tmp_path / "run"
    run_training(load_config(raw=raw), out, kind="train")
    lrs = {k: v["_last_lr"][0] for k, v in torch.load(out / "state.pt", weights_only=True)["schedulers"].items()}
    assert lrs["G"] == 0.0 and lrs["vem.ebm"] == pytest.approx(1e-4)


def test_teacher_need_is_checked_from_the_recipe_before_anything_runs(unpaired, tmp_path):
    base = {"student": {"arch": "resnet_6blocks", "ngf": 4}, "teacher": {"mode": "none"}, "loss": [{"name": "recon"}]}
    check_method(load_config(raw={**base, "data": {"root": "x", "layout": "aligned"}}))  # paired: recon uses y
    with pytest.raises(ConfigError, match="recon.*unpaired"):
        check_method(load_config(raw={**base, "data": {"root": "x", "layout": "unaligned"}}))
    missing = tmp_path / "never_made"
    with pytest.raises(ConfigError, match="recon"):  # refused before data.synth makes the dataset
        run_training(load_config(raw={**base, "data": {"root": str(missing), "layout": "unaligned",
                                                       "synth": {"task": "unpaired", "num": 2, "size": 32}}}),
                     tmp_path / "run", kind="train")
    assert not missing.exists()
    vem = {**base, "loss": [{"name": "vem", "to": "auto"}]}
    check_method(load_config(raw={**vem, "data": {"root": "x", "layout": "aligned"}}))


def test_online_cyclegan_run_resumes_exactly(unpaired, tmp_path):
    """Pools, kept snapshot, selection buffers, n_dis skipping and the fixed-lr EBM all come back from state.pt."""
    import csv

    raw = cycle_recipe(unpaired, eval_every=2, eval_metric="cycle_psnr", update_every=2)
    raw["train"]["steps"] = 3
    raw["loss"].append({"name": "vem", "weight": 0.1, "channels": 2, "langevin_steps": 1})
    cfg = load_config(raw=raw)
    run_training(cfg, tmp_path / "full")
    run_training(cfg, tmp_path / "split", stop_at=2)
    run_training(cfg, tmp_path / "split", resume=True)

    def rows(run: str) -> list[dict]:
        with (tmp_path / run / "metrics.csv").open() as fh:
            return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(fh)]

    full = rows("full")
    assert full == rows("split") and len(full) == 3
    assert full[0]["teacher.G_total"] and not full[1]["teacher.G_total"]  # the teacher steps every 2nd step


SHRINK = ["train.steps=2", "data.synth.num=2", "data.synth.num_test=2", "data.synth.size=16", "teacher.model.ngf=4",
          "teacher.online_discriminator.arch=n_layers", "teacher.online_discriminator.ndf=4",
          "teacher.online_discriminator.kwargs.n_layers=1", "student.ngf=2", "teacher.eval_every=1", "eval.num=2"]


@pytest.mark.parametrize("method", ["crd", "omgd", "vem"])
def test_cyclegan_recipes_run_from_an_empty_folder(method, tmp_path):
    """The shipped unpaired recipes themselves, through the CLI, shrunk to test size."""
    from slimgan.cli import main

    out = tmp_path / "RUN"
    sets = [*SHRINK, *(["loss.4.channels=2", "loss.4.langevin_steps=1"] if method == "vem" else [])]
    argv = ["distill", "--config", f"configs/synth/{method}_cyclegan.yaml", "--out", str(out)]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    for name in ("student", "teacher", "teacher_best", "teacher_discriminator"):
        assert (out / name / "model.safetensors").is_file(), name
