"""What Twitter2015 and Sarcasm share: one RGB image and one tokenised text per sample."""

from __future__ import annotations

import numpy as np

from mmbalance.data.real import images
from mmbalance.data.real.preparer import Item, Preparer
from mmbalance.data.real.text import load_tokenizer
from mmbalance.errors import ConfigError


def check_image_text_settings(settings) -> None:
    """The checks every image-text dataset's preparation settings share."""
    for key in ("image_size", "max_words"):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"prepare: {key} must be > 0, got {getattr(settings, key)}")
    if settings.text_length < 2:
        raise ConfigError(f"prepare: text_length must be >= 2, got {settings.text_length}")


class ImageTextPreparer(Preparer):
    """Images resized to `image_size` (uint8), text as `text_length` token ids (int64).

    The tokenizer is BERT WordPiece from `settings.tokenizer` (a local vocab.txt or model
    folder) or, without one, the documented hashing tokenizer (`text.py`).
    """

    modalities = ("image", "text")
    path_settings = ("tokenizer",)
    resample = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __init__(self, root, settings=None, skip_missing: bool = False):
        super().__init__(root, settings, skip_missing)
        self.tokenizer = load_tokenizer(self.settings.tokenizer or None,
                                        self.settings.hash_vocab_size)

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        s = self.settings
        return {"image": ((3, s.image_size, s.image_size), "uint8"),
                "text": ((s.text_length,), "int64")}

    def process(self, item: Item) -> dict[str, np.ndarray]:
        s = self.settings
        return {"image": images.read_image(self.root / item.src["image"], s.image_size,
                                           self.resample),
                "text": (self.tokenizer.encode(item.text or "", s.text_length)
                         if item.target is None else
                         self.tokenizer.encode_pair(item.text or "", item.target,
                                                    s.text_length))}

    def encoders(self) -> dict[str, dict]:
        img = {"name": "resnet50", "scale": 1 / 255}
        if self.mean is not None:
            img.update(mean=self.mean, std=self.std)
        return {"image": img,
                "text": {"name": "bert", "vocab_size": self.tokenizer.vocab_size,
                         "pad_id": self.tokenizer.pad_id}}

    def describe(self) -> dict:
        return {"tokenizer": self.tokenizer.name}

    def notes(self) -> list[str]:
        if self.settings.tokenizer:
            return []
        return [("text: no --tokenizer given, so the hashing tokenizer is used: fine for BERT "
                 "trained from scratch, but pretrained BERT weights need the WordPiece ids "
                 "of their vocab.txt (Ctrl-C and prepare again with --tokenizer "
                 "PATH/vocab.txt, into a new --out)")]
