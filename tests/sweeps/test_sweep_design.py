"""expand(): the trials each design yields, in a deterministic order."""
import itertools

from scaleflow.sweeps import SweepSpec, expand


def test_grid_is_the_full_product_with_fixed_options_and_seed():
    spec = SweepSpec(name="g", axes={"lr": [1, 2, 3], "scale": ["tiny", "small"]}, fixed={"steps": 10})
    trials = expand(spec)
    assert len(trials) == 6
    assert trials == [{"steps": 10, "lr": lr, "scale": s, "seed": 0}
                      for lr, s in itertools.product([1, 2, 3], ["tiny", "small"])]
    assert expand(spec) == trials  # deterministic


def test_every_seed_for_every_point():
    trials = expand(SweepSpec(name="s", axes={"lr": [1, 2]}, seeds=[0, 7, 3]))
    assert [(t["lr"], t["seed"]) for t in trials] == [(1, 0), (1, 7), (1, 3), (2, 0), (2, 7), (2, 3)]


def test_exclusions_drop_trials_matching_every_key():
    spec = SweepSpec(name="x", axes={"lr": [1, 2], "scale": ["tiny", "small"]}, seeds=[0, 1],
                     exclude=[{"lr": 2, "scale": "small"}, {"lr": 1, "seed": 1}])
    got = {(t["lr"], t["scale"], t["seed"]) for t in expand(spec)}
    assert got == {(1, "tiny", 0), (1, "small", 0), (2, "tiny", 0), (2, "tiny", 1)}


def test_one_at_a_time_varies_each_axis_alone_around_the_base():
    spec = SweepSpec(name="o", axes={"lr": [1, 2, 3], "scale": ["tiny", "small"]}, design="one_at_a_time",
                     base={"lr": 2, "scale": "tiny"})
    points = [(t["lr"], t["scale"]) for t in expand(spec)]
    assert points == [(2, "tiny"), (1, "tiny"), (3, "tiny"), (2, "small")]  # 1 + (3-1) + (2-1), no duplicate


def test_one_at_a_time_applies_exclusions():
    spec = SweepSpec(name="o", axes={"lr": [1, 2, 3], "scale": ["tiny", "small"]}, design="one_at_a_time",
                     base={"lr": 2, "scale": "tiny"}, exclude=[{"lr": 3}])
    assert [(t["lr"], t["scale"]) for t in expand(spec)] == [(2, "tiny"), (1, "tiny"), (2, "small")]


def test_random_draws_a_seeded_subset_of_grid_points_with_all_their_seeds():
    axes = {"lr": [1, 2, 3, 4], "scale": ["a", "b", "c"]}
    spec = SweepSpec(name="r", axes=axes, design="random", n_random=5, design_seed=3, seeds=[0, 1])
    trials = expand(spec)
    points = [(t["lr"], t["scale"]) for t in trials[::2]]
    assert len(trials) == 10 and len(set(points)) == 5
    assert [t["seed"] for t in trials] == [0, 1] * 5
    grid = list(itertools.product(*axes.values()))
    assert points == sorted(points, key=grid.index)  # grid order
    assert expand(spec) == trials
    other = expand(SweepSpec(name="r", axes=axes, design="random", n_random=5, design_seed=4, seeds=[0, 1]))
    assert other != trials  # the draw depends on design_seed


def test_random_takes_all_points_when_asked_for_more_and_skips_excluded():
    spec = SweepSpec(name="r", axes={"lr": [1, 2, 3]}, design="random", n_random=10, exclude=[{"lr": 2}])
    assert [t["lr"] for t in expand(spec)] == [1, 3]
    spec = SweepSpec(name="r", axes={"lr": [1, 2, 3, 4]}, design="random", n_random=3, exclude=[{"lr": 2}])
    assert [t["lr"] for t in expand(spec)] == [1, 3, 4]  # n_random counts points that survive exclusion


def test_one_at_a_time_crossed_axis_repeats_the_screen_at_each_value():
    spec = SweepSpec(name="o", axes={"lr": [1, 2, 3], "scale": ["tiny", "small"], "n_train": [100, 1000]},
                     design="one_at_a_time", base={"lr": 2, "scale": "tiny"}, cross=["n_train"],
                     exclude=[{"n_train": 100, "scale": "small"}])
    points = [(t["n_train"], t["lr"], t["scale"]) for t in expand(spec)]
    assert points == [(100, 2, "tiny"), (100, 1, "tiny"), (100, 3, "tiny"),
                      (1000, 2, "tiny"), (1000, 1, "tiny"), (1000, 3, "tiny"), (1000, 2, "small")]
