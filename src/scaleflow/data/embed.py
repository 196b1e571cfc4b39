"""Turn texts into embedding vectors: SONAR (default, 1024-D) or any sentence-transformers model.

Both encoders are optional extras, imported only when called:

- SONAR: ``pip install 'scaleflow[sonar]'`` (package ``sonar-space``)
- sentence-transformers: ``pip install 'scaleflow[embed]'``

Loading problems (extra not installed, model not found or not available offline) are raised
as `EmbedderUnavailableError` with a one-line message that says what to do.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scaleflow.data.errors import DataError
from scaleflow.data.loading import load_texts

SONAR_ENCODER = "text_sonar_basic_encoder"
SONAR_DECODER = "text_sonar_basic_decoder"
SONAR_LANG = "eng_Latn"
SONAR_DIM = 1024

SONAR_MISSING = ("SONAR is not installed: pip install 'scaleflow[sonar]', "
                 "or pass --model NAME for a sentence-transformers model")
ST_MISSING = ("sentence-transformers is not installed: pip install 'scaleflow[embed]' "
              "to embed with model {model!r}")


class EmbedderUnavailableError(RuntimeError):
    """The requested text encoder cannot be used here (extra missing, model not loadable)."""


DOWNLOAD_REFUSED = ("{what} is not a local model and would be downloaded; nothing is downloaded at run time "
                    "unless you say so: pass --allow-download (allow_download=True), or a local model directory")


def embed_texts(texts: list[str], model: str | None = None, batch_size: int = 64,
                device: str = "cpu", allow_download: bool = False) -> np.ndarray:
    """Embed texts with SONAR or a sentence-transformers model.

    Args:
        texts: N strings.
        model: None or "sonar" for SONAR's English text encoder (``text_sonar_basic_encoder``,
            source language ``eng_Latn``, 1024-D); otherwise a sentence-transformers model
            name or local directory.
        batch_size: texts per forward pass.
        device: torch device string, e.g. "cpu" or "cuda".
        allow_download: let the encoder fetch its weights from a hub. Off: a sentence-transformers model is
            loaded from a local directory or the local cache only, and SONAR (whose fairseq2 loader fetches
            on first use) is refused.

    Returns:
        float32 array ``[N, D]`` (D = 1024 for SONAR, the model's dimension otherwise),
        row i being the embedding of texts[i]. Sentence-transformers models are used with
        their own pipeline, so a model that ends with a Normalize layer gives unit rows.

    Raises:
        EmbedderUnavailableError: the encoder's package is missing or the model cannot be loaded.
        ValueError: texts is empty or batch_size < 1.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("embed_texts: no texts to embed")
    if batch_size < 1:
        raise ValueError(f"embed_texts: batch_size must be >= 1, got {batch_size}")
    if model is None or model.lower() == "sonar":
        out = _embed_sonar(texts, batch_size, device, allow_download)
    else:
        out = _embed_sentence_transformers(texts, model, batch_size, device, allow_download)
    out = np.asarray(out, dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != len(texts):
        raise RuntimeError(f"encoder returned shape {out.shape} for {len(texts)} texts")
    return out


def _embed_sonar(texts: list[str], batch_size: int, device: str, allow_download: bool = False) -> np.ndarray:
    try:
        from sonar.inference_pipelines.text import TextToEmbeddingModelPipeline
    except ImportError as e:
        raise EmbedderUnavailableError(SONAR_MISSING) from e
    import torch

    if not allow_download:  # fairseq2 fetches (then caches) SONAR's weights itself: we cannot tell it not to
        raise EmbedderUnavailableError(DOWNLOAD_REFUSED.format(what=f"SONAR's {SONAR_ENCODER}"))

    try:
        pipeline = TextToEmbeddingModelPipeline(
            encoder=SONAR_ENCODER, tokenizer=SONAR_ENCODER, device=torch.device(device)
        )
    except Exception as e:  # fairseq2 raises its own asset/download errors
        raise EmbedderUnavailableError(_load_failure("SONAR " + SONAR_ENCODER, e)) from e
    emb = pipeline.predict(texts, source_lang=SONAR_LANG, batch_size=batch_size,
                           target_device=torch.device("cpu"))
    return emb.float().numpy()


def check_decodable(dim: int) -> None:
    """Raise before any work if `dim`-D embeddings cannot be decoded: SONAR's are 1024-D and need the
    `[sonar]` extra (the decoder itself loads only in `decode_embeddings`)."""
    if dim != SONAR_DIM:
        raise ValueError(f"--decode needs SONAR embeddings ({SONAR_DIM}-D); this run's are {dim}-D")
    try:
        import sonar  # noqa: F401
    except ImportError as e:
        raise EmbedderUnavailableError(SONAR_MISSING) from e


def decode_embeddings(embeddings: np.ndarray, batch_size: int = 32, device: str = "cpu",
                      max_seq_len: int = 128) -> list[str]:
    """Decode SONAR embeddings `[N, 1024]` to English text with SONAR's text decoder.

    Raises:
        EmbedderUnavailableError: SONAR is not installed or its decoder cannot be loaded.
        ValueError: the embeddings are not 1024-D (they cannot be SONAR embeddings).
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != SONAR_DIM:
        raise ValueError(f"--decode needs SONAR embeddings [N, {SONAR_DIM}]; these are {list(embeddings.shape)}")
    try:
        from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline
    except ImportError as e:
        raise EmbedderUnavailableError(SONAR_MISSING) from e
    import torch

    try:
        pipeline = EmbeddingToTextModelPipeline(decoder=SONAR_DECODER, tokenizer=SONAR_ENCODER,
                                                device=torch.device(device))
    except Exception as e:  # fairseq2 raises its own asset/download errors
        raise EmbedderUnavailableError(_load_failure("SONAR " + SONAR_DECODER, e)) from e
    return list(pipeline.predict(torch.from_numpy(embeddings), target_lang=SONAR_LANG,
                                 batch_size=batch_size, max_seq_len=max_seq_len))


def _embed_sentence_transformers(texts: list[str], model: str, batch_size: int,
                                 device: str, allow_download: bool = False) -> np.ndarray:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise EmbedderUnavailableError(ST_MISSING.format(model=model)) from e

    local = Path(model).expanduser().is_dir()
    try:
        # Without allow_download: a local directory, or the hub's local cache, never the network.
        st_model = SentenceTransformer(model, device=device, local_files_only=not (allow_download or local))
    except Exception as e:  # OSError, HF hub errors, ValueError for a bad dir: all mean "can't load"
        if not (allow_download or local):
            raise EmbedderUnavailableError(DOWNLOAD_REFUSED.format(what=f"model {model!r}")
                                           + f" ({type(e).__name__})") from e
        raise EmbedderUnavailableError(_load_failure(model, e)) from e
    return st_model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                           show_progress_bar=False)


def _load_failure(model: str, e: BaseException) -> str:
    """One-line message for a model that could not be loaded."""
    detail = " ".join(str(e).split())[:200] or type(e).__name__
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        why = ("HF_HUB_OFFLINE is set and it is not available locally; "
               "pass a local model directory or download it first")
    else:
        why = ("it is neither a local model directory nor in the local cache, and it could "
               "not be fetched (offline?); pass a local model directory")
    return f"could not load model {model!r}: {why} ({type(e).__name__}: {detail})"


def read_texts(path: str | Path) -> list[str]:
    """Read texts to embed (`loading.load_texts`), refusing empty ones: an empty text has no
    meaningful embedding and is usually a stray blank line.

    Returns:
        list of N non-empty strings, in file order.

    Raises:
        DataError (a ValueError): what `load_texts` refuses, no texts at all, or an empty text
        (the message names its line).
    """
    texts = load_texts(path)
    if not texts:
        raise DataError(f"{path}: contains no texts")
    for i, text in enumerate(texts, start=1):
        if not text.strip():
            raise DataError(f"{path}: line {i} is empty; every line must hold one text")
    return texts
