"""SweepSpec validation and load_sweep's one-line errors."""
import pytest
from pydantic import ValidationError

from scaleflow.sweeps import SweepSpec, load_sweep
from scaleflow.training.config import ConfigError


def _write(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_load_sweep_reads_every_field(tmp_path):
    spec = load_sweep(_write(tmp_path, """
name: lr-scale
axes: {lr: [0.001, 0.0003], scale: [tiny, small]}
fixed: {steps: 100}
exclude: [{scale: small, lr: 0.001}]
seeds: [0, 1]
"""))
    assert spec.name == "lr-scale" and spec.task == "train" and spec.design == "grid"
    assert spec.axes == {"lr": [0.001, 0.0003], "scale": ["tiny", "small"]}
    assert spec.fixed == {"steps": 100} and spec.seeds == [0, 1]
    assert spec.exclude == [{"scale": "small", "lr": 0.001}]


@pytest.mark.parametrize("text, problem", [
    ("name: a\naxes: {lr: [1, 2]\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("name: a\naxes: {lr: [1]}\nlearning_rate: 3\n", "learning_rate: unknown key"),
    ("name: a\naxes: {}\n", "at least one option"),
    ("name: a\naxes: {lr: []}\n", "axes.lr: empty list"),
    ("name: a\naxes: {lr: [1, 2, 1]}\n", "axes.lr: a value appears twice"),
    ("name: a\naxes: {lr: [1, 2]}\nfixed: {lr: 3}\n", "axes.lr: also in fixed"),
    ("name: a\naxes: {lr: [1, 2]}\nexclude: [{lrr: 1}]\n", "exclude.0: lrr"),
    ("name: a\naxes: {lr: [1, 2]}\ndesign: one_at_a_time\n", "base.lr: one_at_a_time needs a base value"),
    ("name: a\naxes: {lr: [1, 2]}\ndesign: one_at_a_time\nbase: {lr: 5}\n", "base.lr: 5 is not one of"),
    ("name: a\naxes: {lr: [1, 2]}\ndesign: random\n", "n_random: design random needs"),
    ("name: a\naxes: {lr: [1, 2]}\ndesign: sobol\n", "design: Input should be"),
    ("name: a\naxes: {lr: [1, 2]}\nseeds: [0, 0]\n", "seeds: a seed appears twice"),
])
def test_load_sweep_errors_name_the_file_and_problem(tmp_path, text, problem):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_load_sweep_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "nope.yaml")


def test_spec_requires_name_and_axes():
    with pytest.raises(ValidationError):
        SweepSpec(axes={"lr": [1]})
    with pytest.raises(ValidationError):
        SweepSpec(name="a")


@pytest.mark.parametrize("extra,message", [
    ({"cross": ["n_train"], "base": {"lr": 1}}, "cross.n_train: not an axis"),
    ({"cross": ["lr"], "base": {"lr": 1}}, "base.lr: a crossed axis"),
])
def test_cross_must_name_an_axis_without_a_base_value(extra, message):
    with pytest.raises(ValueError, match=message):
        SweepSpec(name="c", axes={"lr": [1, 2]}, design="one_at_a_time", **extra)


def test_unknown_task_and_option_names_are_refused():
    with pytest.raises(ValueError, match="task: 'bake' is not one of train"):
        SweepSpec(name="c", axes={"lr": [1]}, task="bake")
    with pytest.raises(ValueError, match="axes.widht: not an option of a train trial; known: .*batch_size"):
        SweepSpec(name="c", axes={"widht": [1]})
    with pytest.raises(ValueError, match="fixed.out: not an option"):
        SweepSpec(name="c", axes={"lr": [1]}, fixed={"out": "x"})
