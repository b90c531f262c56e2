"""Options made from config fields (``ugss.options`` + ``ugss.cli_config``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ugss.cli_config import _with_default, config_option, config_options
from ugss.options import option, option_fields


@dataclass(frozen=True)
class Toy:
    size: int = option(3, help="A size")
    rate: float = option(0.5, help="A rate")
    strict: bool = option(False, help="Be strict")
    smooth: bool = option(True, help="Keep it raw", flags=("--no-smooth",), invert=True)
    dirs: tuple[str, ...] = option((), help="Folders", flags=("--dir",), metavar="DIR")
    where: Path | None = option(None, help="Somewhere")
    hidden: int = 7  # a config field that is not an option


def _app(unset: bool = False) -> tuple[typer.Typer, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    app = typer.Typer()

    @app.command()
    @config_options(Toy, unset=unset, before="loud")
    def cmd(loud: bool = False, **options: Any) -> None:
        seen.append({"loud": loud, **options})

    return app, seen


def test_options_fill_the_fields_with_their_defaults_and_conversions():
    app, seen = _app()
    assert CliRunner().invoke(app, []).exit_code == 0
    assert seen[-1] == {
        "loud": False, "size": 3, "rate": 0.5, "strict": False, "smooth": True, "dirs": (),
        "where": None,
    }  # fmt: skip
    args = ["--size", "5", "--strict", "--no-smooth", "--dir", "a", "--dir", "b", "--where", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen[-1] == {
        "loud": False, "size": 5, "rate": 0.5, "strict": True, "smooth": False,
        "dirs": ("a", "b"), "where": Path("x"),
    }  # fmt: skip
    assert Toy(**{k: v for k, v in seen[-1].items() if k != "loud"}).dirs == ("a", "b")


def test_unset_mode_passes_none_for_what_was_not_given_and_names_defaults():
    app, seen = _app(unset=True)
    assert CliRunner().invoke(app, ["--rate", "2"]).exit_code == 0
    assert seen[-1]["rate"] == 2.0
    assert {k for k, v in seen[-1].items() if v is None} == {"size", "strict", "dirs", "where"}
    text = " ".join(CliRunner().invoke(app, ["--help"]).output.replace("│", " ").split())
    assert "A size (default 3)" in text
    assert "--hidden" not in text


def test_help_order_and_bad_value():
    app, _ = _app()
    out = CliRunner().invoke(app, ["--help"]).output
    assert out.index("--size") < out.index("--loud")  # generated options before `before`
    result = CliRunner().invoke(app, ["--size", "many"])
    assert result.exit_code == 2


def test_an_option_declared_twice_is_refused():
    with pytest.raises(TypeError, match="declared twice"):

        @config_options(Toy)
        def cmd(size: int = 1, **options: Any) -> None: ...


def test_with_default_keeps_the_sentence():
    assert _with_default("Port.", 11112) == "Port (default 11112)."
    assert _with_default("Timeout", 2.0) == "Timeout (default 2)"
    assert _with_default("Model (default: bundled)", None) == "Model (default: bundled)"


def test_one_field_option_is_the_generated_one():
    app, _ = _app(unset=True)
    single = typer.Typer()

    @single.command()
    def cmd(size: config_option(Toy, "size", unset=True) = None) -> None: ...

    def help_line(a: typer.Typer) -> str:
        out = CliRunner().invoke(a, ["--help"], env={"COLUMNS": "200"}).output
        return " ".join(next(x for x in out.splitlines() if "--size" in x).split())

    assert help_line(single) == help_line(app)
    with pytest.raises(KeyError):
        config_option(Toy, "hidden")


@pytest.mark.parametrize("which", ["train", "node"])
def test_every_option_field_is_on_the_command_line(which):
    """A field declared with option() reaches --help of its command with no other change."""
    if which == "train":
        from ugss.train.cli import app
        from ugss.train.config import DataConfig, MethodConfig, OptimConfig, RunConfig
        from ugss.train.model import ModelConfig

        classes: tuple[type, ...] = (DataConfig, ModelConfig, MethodConfig, OptimConfig, RunConfig)
    else:
        from ugss.dicom_node.cli import app
        from ugss.dicom_node.config import NodeConfig

        classes = (NodeConfig,)
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "240"}).output
    for cls in classes:
        for f, spec in option_fields(cls):
            flag = spec.flags[0].split("/")[0] if spec.flags else "--" + f.name.replace("_", "-")
            assert flag in out, (cls.__name__, f.name)
