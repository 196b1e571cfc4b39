"""embed_texts / read_texts: file parsing, error messages for missing extras, real and fake encoders."""
from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from scaleflow.data.embed import EmbedderUnavailableError, embed_texts, read_texts
from scaleflow.data.errors import DataError


# ---------------------------------------------------------------- read_texts

def test_read_txt(tmp_path: Path):
    p = tmp_path / "t.txt"
    p.write_text("first text\nsecond, with trailing space \r\nthird\n", encoding="utf-8")
    assert read_texts(p) == ["first text", "second, with trailing space ", "third"]


def test_read_txt_without_final_newline(tmp_path: Path):
    p = tmp_path / "t.txt"
    p.write_text("a\nb", encoding="utf-8")
    assert read_texts(p) == ["a", "b"]


@pytest.mark.parametrize("content, line", [("a\n\nb\n", 2), ("a\nb\n   \n", 3), ("\na\n", 1)])
def test_read_txt_empty_line_names_line(tmp_path: Path, content: str, line: int):
    p = tmp_path / "t.txt"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"line {line} is empty"):
        read_texts(p)


def test_read_jsonl(tmp_path: Path):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(["x y", "z\nw"])) + "\n",
                 encoding="utf-8")
    assert read_texts(p) == ["x y", "z\nw"]


@pytest.mark.parametrize("lines, line, msg", [
    (['{"text": "ok"}', '{"txt": "typo"}'], 2, "no string field 'text'"),
    (['{"text": "ok"}', '{"text": "ok"}', '{bad json'], 3, "not valid JSON"),
    (['{"text": "ok"}', '{"text": ""}'], 2, "is empty"),
])
def test_read_jsonl_errors_name_line(tmp_path: Path, lines, line, msg):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"line {line} .*{re.escape(msg)}"):
        read_texts(p)


def test_read_texts_bad_files(tmp_path: Path):
    with pytest.raises(DataError, match="file not found"):
        read_texts(tmp_path / "missing.txt")
    (tmp_path / "t.csv").write_text("a\n")
    with pytest.raises(DataError, match="unsupported"):
        read_texts(tmp_path / "t.csv")
    empty = tmp_path / "e.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="file is empty"):
        read_texts(empty)
    latin = tmp_path / "l.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_texts(latin)


def test_data_error_is_value_error(tmp_path: Path):
    with pytest.raises(ValueError):
        read_texts(tmp_path / "t.csv")


# ---------------------------------------------------------------- missing extras

def _block(monkeypatch, *names: str) -> None:
    """Make `import name` fail as if the package were not installed (None in sys.modules)."""
    for name in list(sys.modules):
        if any(name == n or name.startswith(n + ".") for n in names):
            monkeypatch.delitem(sys.modules, name)
    for n in names:
        monkeypatch.setitem(sys.modules, n, None)


@pytest.mark.parametrize("model", [None, "sonar", "SONAR"])
def test_sonar_missing_message(monkeypatch, model):
    _block(monkeypatch, "sonar")
    with pytest.raises(EmbedderUnavailableError) as exc:
        embed_texts(["hello"], model=model)
    assert str(exc.value) == ("SONAR is not installed: pip install 'scaleflow[sonar]', "
                              "or pass --model NAME for a sentence-transformers model")
    assert isinstance(exc.value, RuntimeError)


def test_sentence_transformers_missing_message(monkeypatch):
    _block(monkeypatch, "sentence_transformers")
    with pytest.raises(EmbedderUnavailableError, match=r"pip install 'scaleflow\[embed\]'") as exc:
        embed_texts(["hello"], model="some/model")
    assert "some/model" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_empty_input_and_bad_batch_size():
    with pytest.raises(ValueError, match="no texts"):
        embed_texts([], model="x")
    with pytest.raises(ValueError, match="batch_size"):
        embed_texts(["a"], model="x", batch_size=0)


# ---------------------------------------------------------------- wiring, with fake encoders

def test_sonar_pipeline_called_as_documented(monkeypatch):
    """A stand-in for sonar's TextToEmbeddingModelPipeline: checks the arguments we pass."""
    import torch

    calls: dict = {}

    class FakePipeline:
        def __init__(self, encoder, tokenizer, device=None, dtype=None):
            calls["init"] = dict(encoder=encoder, tokenizer=tokenizer, device=device)

        def predict(self, input, source_lang, batch_size=5, target_device=None, **kw):
            calls["predict"] = dict(input=list(input), source_lang=source_lang, batch_size=batch_size)
            return torch.ones(len(input), 1024, dtype=torch.float16)

    text_mod = types.ModuleType("sonar.inference_pipelines.text")
    text_mod.TextToEmbeddingModelPipeline = FakePipeline
    monkeypatch.setitem(sys.modules, "sonar", types.ModuleType("sonar"))
    monkeypatch.setitem(sys.modules, "sonar.inference_pipelines", types.ModuleType("sonar.inference_pipelines"))
    monkeypatch.setitem(sys.modules, "sonar.inference_pipelines.text", text_mod)

    with pytest.raises(EmbedderUnavailableError, match="--allow-download") as refused:
        embed_texts(["a", "b", "c"], batch_size=2)  # fairseq2 would fetch SONAR's weights: not without consent
    assert "\n" not in str(refused.value) and not calls
    out = embed_texts(["a", "b", "c"], batch_size=2, allow_download=True)
    assert out.shape == (3, 1024) and out.dtype == np.float32
    assert calls["init"]["encoder"] == "text_sonar_basic_encoder"
    assert calls["init"]["tokenizer"] == "text_sonar_basic_encoder"
    assert str(calls["init"]["device"]) == "cpu"
    assert calls["predict"] == dict(input=["a", "b", "c"], source_lang="eng_Latn", batch_size=2)


def test_sentence_transformers_load_failure_is_one_line(monkeypatch):
    class FailingST:
        def __init__(self, name, device=None, local_files_only=False):
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}.\nCheck your connection")

    fake = types.ModuleType("sentence_transformers")
    fake.SentenceTransformer = FailingST
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderUnavailableError) as exc:
        embed_texts(["a"], model="org/not-here", allow_download=True)
    msg = str(exc.value)
    assert "'org/not-here'" in msg and "\n" not in msg
    assert "HF_HUB_OFFLINE" in msg
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(EmbedderUnavailableError, match="could not be fetched"):
        embed_texts(["a"], model="org/not-here", allow_download=True)
    # Without consent, a model that is not in the local cache is refused as a download.
    with pytest.raises(EmbedderUnavailableError, match="--allow-download"):
        embed_texts(["a"], model="org/not-here")


def test_sentence_transformers_wiring(monkeypatch):
    seen: dict = {}

    class FakeST:
        def __init__(self, name, device=None, local_files_only=False):
            seen.update(name=name, device=device, local_files_only=local_files_only)

        def encode(self, texts, batch_size=32, **kw):
            seen["batch_size"] = batch_size
            return np.arange(len(texts) * 4, dtype=np.float64).reshape(len(texts), 4)

    fake = types.ModuleType("sentence_transformers")
    fake.SentenceTransformer = FakeST
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake)
    out = embed_texts(["a", "b"], model="org/cached", batch_size=7, device="cpu")
    assert out.dtype == np.float32 and out.shape == (2, 4)
    # A hub name: from the local cache only, unless downloads are allowed.
    assert seen == dict(name="org/cached", device="cpu", local_files_only=True, batch_size=7)
    embed_texts(["a", "b"], model="org/cached", batch_size=7, device="cpu", allow_download=True)
    assert seen["local_files_only"] is False


# ---------------------------------------------------------------- a real, tiny, local model

@pytest.fixture(scope="module")
def tiny_st_model(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT + mean pooling + Normalize, saved to disk (no download)."""
    st = pytest.importorskip("sentence_transformers")
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_st")
    bert_dir = root / "bert"
    bert_dir.mkdir()
    words = "the a cat dog sat on mat big small red runs".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = transformers.BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(bert_dir)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(bert_dir)

    try:  # sentence-transformers >= 6 moved the modules; `models` is the older (deprecated) home
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer

    word = Transformer(str(bert_dir), max_seq_length=32)
    pool = Pooling(cfg.hidden_size, pooling_mode="mean")
    model_dir = root / "st_model"
    st.SentenceTransformer(modules=[word, pool, Normalize()], device="cpu").save(str(model_dir))
    return model_dir


def test_real_tiny_model(tiny_st_model: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["the cat sat on the mat", "a big red dog runs", "small cat"]
    out = embed_texts(texts, model=str(tiny_st_model), batch_size=2)
    assert out.shape == (3, 16) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(out[0], out[1])
    # deterministic, and independent of batching
    again = embed_texts(texts, model=str(tiny_st_model), batch_size=3)
    np.testing.assert_allclose(out, again, atol=1e-5)


def test_real_missing_local_model(tmp_path: Path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(EmbedderUnavailableError) as exc:
        embed_texts(["a"], model=str(missing))
    assert str(missing) in str(exc.value) and "\n" not in str(exc.value)
