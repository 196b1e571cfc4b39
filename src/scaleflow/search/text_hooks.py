"""Text in the search loop: a decoder turns candidates into the texts users score, an encoder maps those texts
back, and the round trip says whether a candidate's text still means the candidate (InvBO's misalignment).

- decoder: `--decoder sonar` (SONAR's text decoder, extra `[sonar]`, 1024-D embeddings) or `MODULE:FUNCTION`,
  `f(x: [N, D] original space) -> list of N str`;
- encoder: `--encoder sonar` (SONAR's text encoder) or `MODULE:FUNCTION`, `f(texts: list of N str) -> [N, D]`.

Both are checked on every call (length, shape, finite values) and fail with one line naming the flag.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from scaleflow.search.objectives import ObjectiveError, load_objective


@dataclass
class TextHooks:
    """The decoder and encoder of a search (either may be None), and the least round-trip cosine a candidate
    needs to count (None: recorded, not required)."""

    decoder: Optional[Callable[[Tensor], list[str]]] = None
    encoder: Optional[Callable[[list[str]], Tensor]] = None
    min_roundtrip: Optional[float] = None
    decoder_name: Optional[str] = None
    encoder_name: Optional[str] = None

    def decode(self, x: Tensor) -> Optional[list[str]]:
        """`x: [N, D]` -> N texts (None without a decoder)."""
        if self.decoder is None:
            return None
        try:
            texts = self.decoder(x)
        except Exception as err:  # the user's function: one line naming it
            raise ObjectiveError(f"--decoder {self.decoder_name}: raised {type(err).__name__}: "
                                 f"{' '.join(str(err).split())[:300]}") from None
        texts = list(texts) if not isinstance(texts, str) else None
        if texts is None or len(texts) != len(x) or not all(isinstance(t, str) for t in texts):
            raise ObjectiveError(f"--decoder {self.decoder_name}: must return a list of {len(x)} strings")
        return texts

    def roundtrip(self, x: Tensor, texts: list[str]) -> Optional[Tensor]:
        """`[N]` cosine between each candidate `x: [N, D]` and the encoding of its text (None without an encoder)."""
        if self.encoder is None:
            return None
        try:
            encoded = self.encoder(texts)
        except Exception as err:
            raise ObjectiveError(f"--encoder {self.encoder_name}: raised {type(err).__name__}: "
                                 f"{' '.join(str(err).split())[:300]}") from None
        encoded = torch.as_tensor(np.asarray(encoded), dtype=torch.float64)
        if encoded.shape != x.shape or not torch.isfinite(encoded).all():
            raise ObjectiveError(f"--encoder {self.encoder_name}: must return finite embeddings of shape "
                                 f"{list(x.shape)}; got {list(encoded.shape)}")
        return torch.nn.functional.cosine_similarity(x.double(), encoded, dim=1)


def _sonar_decoder(x: Tensor) -> list[str]:
    from scaleflow.data.embed import decode_embeddings

    return decode_embeddings(x.detach().cpu().float().numpy())


def _sonar_encoder(texts: list[str]) -> Tensor:
    from scaleflow.data.embed import embed_texts

    # `--encoder sonar` asks for SONAR by name, as `--decoder sonar` does (whose fairseq2 loader fetches on first
    # use too): the search's hooks load it as they always did; `scaleflow embed` asks first (--allow-download).
    return torch.from_numpy(embed_texts(texts, "sonar", allow_download=True))


def load_hooks(decoder: Optional[str] = None, encoder: Optional[str] = None,
               min_roundtrip: Optional[float] = None, dim: Optional[int] = None) -> TextHooks:
    """The hooks named by `--decoder`, `--encoder` ("sonar" or MODULE:FUNCTION) and `--min-roundtrip`.

    Raises:
        ValueError: a round-trip minimum without both hooks, or out of [-1, 1]; SONAR asked for embeddings
            that are not 1024-D or without the `[sonar]` extra (`data.embed.check_decodable`).
        ObjectiveError: a MODULE:FUNCTION that cannot be imported.
    """
    if min_roundtrip is not None:
        if not -1 <= min_roundtrip <= 1:
            raise ValueError(f"--min-roundtrip {min_roundtrip}: a cosine, between -1 and 1")
        if decoder is None or encoder is None:
            raise ValueError("--min-roundtrip needs both --decoder and --encoder (the round trip decodes and re-encodes)")
    hooks = TextHooks(min_roundtrip=min_roundtrip, decoder_name=decoder, encoder_name=encoder)
    for spec, kind in ((decoder, "decoder"), (encoder, "encoder")):
        if spec is None:
            continue
        if spec.lower() == "sonar":
            if dim is not None:
                from scaleflow.data.embed import check_decodable

                check_decodable(dim)
            fn = _sonar_decoder if kind == "decoder" else _sonar_encoder
        else:
            fn = load_objective(spec, option=f"--{kind}")
        setattr(hooks, kind, fn)
    return hooks
