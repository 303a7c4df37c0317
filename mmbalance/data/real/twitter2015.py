"""Twitter2015 (multimodal target sentiment, 3 classes), in the layout the BSS code reads.

Raw layout (`--root RAW`):

```
RAW/annotations/train.tsv   tab-separated with a header: `Label` (0 negative, 1 neutral,
RAW/annotations/dev.tsv     2 positive), `String` (the tweet), `ImageID` (file name)
RAW/annotations/test.tsv
RAW/twitter2015_images/<ImageID>
```

The original TomBERT files (`#1 Label`, `#2 ImageID`, `#3 String` with the target masked as
`$T$`, then the target in a second `#3 String` column) are read too: the target is put back.

Prepared (`OUT`, see `store.py`): `image` (3, 384, 384) uint8 (the BSS code resizes to 384
and only scales to [0, 1]) and `text` (30,) int64 token ids of the cleaned tweet (English
words only, lowercase, no punctuation, at most 20 words, then `[CLS] ... [SEP]` to 30 ids,
the code's `max_length=30`). Twitter2015 has its own dev split, used as val. Backbones:
ResNet50 for the image, BERT for the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmbalance.data.real.imagetext import ImageTextPreparer, check_image_text_settings
from mmbalance.data.real.store import Item
from mmbalance.data.real.text import english_words, pre_caption
from mmbalance.errors import DataError

CLASSES = ("negative", "neutral", "positive")
SPLIT_FILES = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}


@dataclass
class Settings:
    image_size: int = 384
    max_words: int = 20
    text_length: int = 30
    tokenizer: str = ""  # local BERT vocab.txt or model folder; "" = hashing tokenizer
    hash_vocab_size: int = 30522
    image_dir: str = "twitter2015_images"

    def check(self) -> None:
        check_image_text_settings(self)


def read_tsv(path: Path) -> list[tuple[int, str, str]]:
    """(label, text, image id) rows of a Twitter2015 TSV, either column naming."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable annotation file: {exc}") from exc
    if {"Label", "String", "ImageID"} <= set(df.columns):
        texts = df["String"].tolist()
        labels, ids = df["Label"].tolist(), df["ImageID"].tolist()
    elif {"#1 Label", "#2 ImageID", "#3 String"} <= set(df.columns):
        labels, ids = df["#1 Label"].tolist(), df["#2 ImageID"].tolist()
        targets = df["#3 String.1"].tolist() if "#3 String.1" in df.columns else None
        texts = [t.replace("$T$", targets[i]) if targets else t
                 for i, t in enumerate(df["#3 String"].tolist())]
    else:
        raise DataError(f"{path}: expected columns Label, String, ImageID (or TomBERT's "
                        f"#1 Label, #2 ImageID, #3 String); header is {list(df.columns)}")
    rows = []
    for n, (label, text, image) in enumerate(zip(labels, texts, ids), start=2):
        try:
            y = int(label)
        except ValueError:
            raise DataError(f"{path}: line {n}: label {label!r} is not an integer") from None
        if not 0 <= y < len(CLASSES):
            raise DataError(f"{path}: line {n}: label {y} outside 0..{len(CLASSES) - 1}")
        rows.append((y, text, image.strip()))
    return rows


class Twitter2015Preparer(ImageTextPreparer):
    name = "twitter2015"
    settings_cls = Settings
    has_val = True

    def items(self) -> tuple[list[Item], list[str]]:
        s = self.settings
        out = []
        for split, fname in SPLIT_FILES.items():
            path = self.root / "annotations" / fname
            for n, (y, text, image_id) in enumerate(read_tsv(path), start=2):
                item_id = f"{split}:{n}:{image_id}"
                image = self.root / s.image_dir / image_id
                if self.require(image, "image", item_id):
                    clean = pre_caption(english_words(text), s.max_words)
                    out.append(Item(item_id, y, split,
                                    {"image": str(image.relative_to(self.root))}, clean))
        return out, list(CLASSES)
