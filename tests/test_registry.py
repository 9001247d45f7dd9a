"""The generic registry every named lookup uses: duplicates refused, unknown names answered with the choices."""

from __future__ import annotations

import pytest

from slimgan.errors import ConfigError
from slimgan.registry import Registry, did_you_mean


def test_register_get_and_metadata():
    reg: Registry = Registry("widget")
    reg.register("alpha", 1, colour="red")

    @reg.register("beta")
    def beta():
        return 2

    assert reg.get("alpha") == 1
    assert reg.get("beta") is beta
    assert reg.meta("alpha") == {"colour": "red"}
    assert reg.names() == ["alpha", "beta"]
    assert "alpha" in reg and "gamma" not in reg
    assert len(reg) == 2


def test_duplicate_is_refused_unless_replaced():
    reg: Registry = Registry("loss")
    reg.register("l1", 1)
    with pytest.raises(ConfigError, match="loss 'l1' is registered twice"):
        reg.register("l1", 2)
    reg.register("l1", 3, replace=True)
    assert reg.get("l1") == 3


def test_unknown_name_lists_choices_and_suggests():
    reg: Registry = Registry("runtime")
    for name in ("onnxruntime", "openvino", "tensorrt"):
        reg.register(name, name)
    with pytest.raises(ConfigError) as info:
        reg.get("openvin")
    message = str(info.value)
    assert "unknown runtime 'openvin'" in message
    assert "did you mean 'openvino'?" in message
    assert "choose one of: onnxruntime, openvino, tensorrt" in message
    assert did_you_mean("zzz", ["onnxruntime"]) == ""


def _plugin_dist(tmp_path, group: str, entries: dict[str, str]) -> None:
    """A real installed distribution on sys.path whose entry points name modules in ``tmp_path``."""
    dist = tmp_path / "demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 1.0\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entries.items())
    (dist / "entry_points.txt").write_text(f"[{group}]\n{lines}")


def test_plugins_from_an_entry_point_group_are_loaded_once(tmp_path, monkeypatch, caplog):
    reg: Registry = Registry("widget", group="slimgan.test_widgets")
    # The plugin module's import is what registers its names (as @register_model does).
    monkeypatch.setitem(__import__("sys").modules, "slimgan_test_widget_registry", reg)
    (tmp_path / "good_plugin_mod.py").write_text(
        "import slimgan_test_widget_registry as reg\nreg.register('from_plugin', 42)\n"
    )
    (tmp_path / "broken_plugin_mod.py").write_text("raise RuntimeError('broken on import')\n")
    _plugin_dist(tmp_path, "slimgan.test_widgets", {"good": "good_plugin_mod", "broken": "broken_plugin_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert reg.get("from_plugin") == 42
    assert reg.names() == ["from_plugin"]  # loaded once: a second import would raise "registered twice"
    assert "broken_plugin_mod" in caplog.text
