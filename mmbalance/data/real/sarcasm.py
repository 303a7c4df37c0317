"""Sarcasm (multimodal sarcasm detection on tweets, 2 classes), as the BSS code reads it.

Raw layout (`--root RAW`):

```
RAW/annotations/train_data.json   a JSON list of {"image": ..., "text": ..., "label": 0|1}
RAW/annotations/test_data.json
RAW/annotations/valid_data.json   optional: used as val when present
RAW/images/<file>                 `image` may carry a path; only its file name is used
```

Prepared (`OUT`, see `store.py`): `image` (3, 224, 224) uint8 (bicubic resize; the encoder
applies the CLIP mean/std the code uses) and `text` (30,) int64 token ids of the cleaned
caption (lowercase, no punctuation, at most 50 words; `[CLS] ... [SEP]` to 30 ids). Without
`valid_data.json`, val is carved from train (stratified, seeded). Backbones: ResNet50 for the
image, BERT for the text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mmbalance.data.real import images
from mmbalance.data.real.imagetext import ImageTextPreparer, check_image_text_settings
from mmbalance.data.real.store import Item
from mmbalance.data.real.text import pre_caption
from mmbalance.errors import DataError

CLASSES = ("not sarcastic", "sarcastic")


@dataclass
class Settings:
    image_size: int = 224
    max_words: int = 50
    text_length: int = 30
    tokenizer: str = ""  # local BERT vocab.txt or model folder; "" = hashing tokenizer
    hash_vocab_size: int = 30522
    val_fraction: float = 0.1
    split_seed: int = 0

    def check(self) -> None:
        check_image_text_settings(self)


def read_json(path: Path) -> list[tuple[int, str, str]]:
    """(label, text, image file name) entries of a Sarcasm annotation file."""
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable JSON: {exc}") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of {{image, text, label}} entries")
    rows = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not {"image", "text", "label"} <= set(entry):
            raise DataError(f"{path}: entry {i}: needs keys image, text, label")
        try:
            y = int(entry["label"])
        except (TypeError, ValueError):
            raise DataError(f"{path}: entry {i}: label {entry['label']!r} is not an "
                            "integer") from None
        if y not in (0, 1):
            raise DataError(f"{path}: entry {i}: label {y} is not 0 or 1")
        rows.append((y, str(entry["text"]), Path(str(entry["image"])).name))
    return rows


class SarcasmPreparer(ImageTextPreparer):
    name = "sarcasm"
    settings_cls = Settings
    resample = "bicubic"
    mean, std = images.CLIP_MEAN, images.CLIP_STD

    def items(self) -> tuple[list[Item], list[str]]:
        s = self.settings
        ann = self.root / "annotations"
        files = {"train": ann / "train_data.json", "test": ann / "test_data.json"}
        for name in ("valid_data.json", "val_data.json"):
            if (ann / name).is_file():
                files["val"] = ann / name
                break
        out = []
        for split, path in files.items():
            for i, (y, text, image_name) in enumerate(read_json(path)):
                item_id = f"{split}:{i}:{image_name}"
                image = self.root / "images" / image_name
                if self.require(image, "image", item_id):
                    out.append(Item(item_id, y, split,
                                    {"image": str(image.relative_to(self.root))},
                                    pre_caption(text, s.max_words)))
        return out, list(CLASSES)
