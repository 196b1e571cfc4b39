"""`scaleflow embed`: bad text files, missing encoder extras and bad output suffixes are one-line
user errors (exit 2) that write nothing. The extras are blocked, so these hold even where installed."""
from __future__ import annotations

import pytest


@pytest.fixture
def texts(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("a first sentence\na second one\n", encoding="utf-8")
    return path


def test_empty_line_is_named(cli, user_error, tmp_path, block_imports):
    block_imports("sonar", "sentence_transformers")
    path = tmp_path / "gaps.txt"
    path.write_text("first\nsecond\n\nfourth\n", encoding="utf-8")
    user_error(cli(["embed", path, "--out", tmp_path / "e.npy"]), "gaps.txt", "line 3", "empty")
    assert not (tmp_path / "e.npy").exists()


def test_without_sonar_names_the_extra(cli, user_error, texts, tmp_path, block_imports):
    block_imports("sonar")
    user_error(cli(["embed", texts, "--out", tmp_path / "e.npy"]), "SONAR", "pip install 'scaleflow[sonar]'")
    assert not (tmp_path / "e.npy").exists()


def test_without_sentence_transformers_names_the_extra(cli, user_error, texts, tmp_path, block_imports):
    block_imports("sentence_transformers")
    result = cli(["embed", texts, "--out", tmp_path / "e.parquet", "--model", "some/model"])
    user_error(result, "sentence-transformers", "pip install 'scaleflow[embed]'", "some/model")
    assert not (tmp_path / "e.parquet").exists()


def test_bad_output_suffix(cli, user_error, texts, tmp_path, block_imports):
    block_imports("sonar", "sentence_transformers")
    user_error(cli(["embed", texts, "--out", tmp_path / "x.csv"]), "x.csv", ".npy", ".parquet")
    assert not (tmp_path / "x.csv").exists()


def test_missing_texts_file(cli, user_error, tmp_path):
    user_error(cli(["embed", tmp_path / "none.txt", "--out", tmp_path / "e.npy"]), "none.txt", "not found")


def test_empty_texts_file(cli, user_error, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n", encoding="utf-8")  # one empty line: no texts
    user_error(cli(["embed", path, "--out", tmp_path / "e.npy"]), "empty.txt")


@pytest.mark.parametrize("device", ["tpu", "cuda:x"])
def test_bad_device_is_named_before_the_missing_extra(cli, user_error, texts, tmp_path, block_imports, device):
    block_imports("sonar")
    message = user_error(cli(["embed", texts, "--out", tmp_path / "e.npy", "--device", device]), device, "device")
    assert "sonar" not in message.lower()
    assert not (tmp_path / "e.npy").exists()


def test_batch_size_must_be_positive(cli, user_error, texts, tmp_path):
    user_error(cli(["embed", texts, "--out", tmp_path / "e.npy", "--batch-size", "0"]), "--batch-size", ">= 1")
