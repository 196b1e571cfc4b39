"""`scaleflow train --init RUN` as users type it: fine-tunes from a run, records it, refuses a source of another
network or dimension in one line."""
import json


def test_train_init_fine_tunes_and_records_the_source(text_run, data_files, make_data, cli, user_error, tiny, tmp_path):
    other, _ = make_data(tmp_path / "other", seed=3, texts=False)
    result = cli(["train", "--data", other, *tiny, "--out", tmp_path / "ft", "--init", text_run])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "ft" / "model.json").read_text())
    assert info["init_from"]["run"] == str(text_run.resolve()) and info["init_from"]["normalization"] == "source"
    result = cli(["eval", tmp_path / "ft", "--n", "40", "--bootstrap", "10", "--no-nfe-curve", "--reference", "gaussian"])
    assert result.exit_code == 0, result.output

    wide = [a if a != "hidden_dim=16" else "hidden_dim=24" for a in tiny]
    user_error(cli(["train", "--data", other, *wide, "--out", tmp_path / "x", "--init", text_run]),
               "--init:", "different mlp network (hidden_dim 16 vs 24)")
    narrow, _ = make_data(tmp_path / "narrow", dim=6, texts=False)
    user_error(cli(["train", "--data", narrow, *tiny, "--out", tmp_path / "y", "--init", text_run]),
               "--init:", "at 8-D; this run builds mlp/tiny at 6-D")
    user_error(cli(["train", "--data", other, *tiny, "--out", tmp_path / "z", "--init-normalization", "refit"]),
               "--init-normalization: only with --init, the run to start from")
    assert not any((tmp_path / name).exists() for name in ("x", "y", "z"))
    user_error(cli(["train", "--out", tmp_path / "ft", "--resume", "--init", text_run]), "drop --init")
