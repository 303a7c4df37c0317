"""Sarcasm (multimodal sarcasm detection on tweets, 2 classes): the original release, or
the JSON files the BSS code reads.

The original release (Cai et al., ACL 2019: github.com/headacheboy/data-of-multimodal-
sarcasm-detection, images from the Google Drive link of its README):

```
RAW/text/train.txt        one Python list literal per line: ['<tweet id>', '<text>', label]
RAW/text/valid2.txt       ['<tweet id>', '<text>', hashtag label, annotator label]
RAW/text/test2.txt
RAW/dataset_image/<tweet id>.jpg
```

Lines are parsed as literals (never executed); the label is the last element (the human
annotator's for valid/test, as the release's loader takes it), and with `drop_cue_words`
the tweets the release's loader leaves out (those with the words sarcasm, sarcastic,
reposting, <url>, joke(s), humour, humor, irony, ironic, exgag) are left out too.
valid2.txt is the val split.

The BSS code's derived files (read when `annotations/` is there):

```
RAW/annotations/train_data.json   a JSON list of {"image": ..., "text": ..., "label": 0|1}
RAW/annotations/test_data.json
RAW/annotations/valid_data.json   optional: used as val when present
RAW/images/<file>                 `image` may carry a path; only its file name is used
```

Images are looked up in `images/`, else `dataset_image/`.

Prepared (`OUT`, see `writer.py`): `image` (3, 224, 224) uint8 (bicubic resize; the encoder
applies the CLIP mean/std the code uses) and `text` (30,) int64 token ids of the cleaned
caption (lowercase, no punctuation, at most 50 words; `[CLS] ... [SEP]` to 30 ids). Without
a val file, val is carved from train (per class, seeded). Backbones: ResNet50 for the
image, BERT for the text.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from mmbalance.data.real import images
from mmbalance.data.real.imagetext import ImageTextPreparer, check_image_text_settings
from mmbalance.data.real.preparer import Item
from mmbalance.data.real.rawfiles import read_text
from mmbalance.data.real.text import pre_caption
from mmbalance.errors import DataError

CLASSES = ("not sarcastic", "sarcastic")
ORIGINAL_FILES = {"train": "train.txt", "val": "valid2.txt", "test": "test2.txt"}
CUE_WORDS = frozenset(("sarcasm", "sarcastic", "reposting", "<url>", "joke", "humour", "humor",
                       "jokes", "irony", "ironic", "exgag"))


@dataclass
class Settings:
    image_size: int = 224
    max_words: int = 50
    text_length: int = 30
    tokenizer: str = ""  # local BERT vocab.txt or model folder; "" = hashing tokenizer
    hash_vocab_size: int = 30522
    val_fraction: float = 0.1
    split_seed: int = 0
    drop_cue_words: bool = True  # original release only: as its loader does

    def check(self) -> None:
        check_image_text_settings(self)


def read_json(path: Path) -> list[tuple[str, int, str, str]]:
    """(where, label, text, image file name) of the entries of a BSS-style JSON file."""
    text = read_text(path, "annotation file")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{path}: unreadable JSON: {exc}") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of {{image, text, label}} entries")
    rows = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not {"image", "text", "label"} <= set(entry):
            raise DataError(f"{path}: entry {i}: needs keys image, text, label")
        rows.append((str(i), _label(entry["label"], f"{path}: entry {i}"), str(entry["text"]),
                     Path(str(entry["image"])).name))
    return rows


def _label(value: object, where: str) -> int:
    try:
        y = int(str(value).strip())
    except ValueError:
        raise DataError(f"{where}: label {value!r} is not an integer") from None
    if y not in (0, 1):
        raise DataError(f"{where}: label {y} is not 0 or 1")
    return y


def read_original(path: Path, drop_cue_words: bool) -> list[tuple[str, int, str, str]]:
    """(line, label, text, image file name) of a file of the original release."""
    lines = read_text(path, "annotation file").splitlines()
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(f"{path}: line {n}: not a list literal ['<id>', '<text>', "
                            "label, ...]") from None
        if (not isinstance(rec, list | tuple) or len(rec) < 3 or not isinstance(rec[1], str)
                or not str(rec[0]).strip().isdigit()):
            raise DataError(f"{path}: line {n}: expected ['<tweet id>', '<text>', label, ...]")
        y = _label(rec[-1], f"{path}: line {n}")
        if drop_cue_words and CUE_WORDS & set(rec[1].split()):
            continue
        rows.append((str(n), y, rec[1], f"{str(rec[0]).strip()}.jpg"))
    return rows


class SarcasmPreparer(ImageTextPreparer):
    name = "sarcasm"
    settings_cls = Settings
    resample = "bicubic"
    mean, std = images.CLIP_MEAN, images.CLIP_STD

    def _annotations(self) -> dict[str, list[tuple[str, int, str, str]]]:
        ann, text = self.child(self.root, "annotations"), self.child(self.root, "text")
        if ann.is_dir():
            files = {"train": ann / "train_data.json", "test": ann / "test_data.json"}
            for name in ("valid_data.json", "val_data.json"):
                if (ann / name).is_file():
                    files["val"] = ann / name
                    break
            return {split: read_json(path) for split, path in files.items()}
        if text.is_dir():
            return {split: read_original(text / name, self.settings.drop_cue_words)
                    for split, name in ORIGINAL_FILES.items()}
        raise self.layout_error("text/ (the original release's train.txt, valid2.txt, "
                                "test2.txt) and dataset_image/, or annotations/ (the BSS "
                                "code's JSON files) and images/")

    def items(self) -> tuple[list[Item], list[str]]:
        s = self.settings
        image_dir = next((self.child(self.root, d) for d in ("images", "dataset_image")
                          if self.child(self.root, d).is_dir()), self.root / "images")
        out = []
        for split, rows in self._annotations().items():
            for where, y, text, image_name in rows:
                item_id = f"{split}:{where}:{image_name}"
                image = self.child(image_dir, image_name)
                if self.require(image, "image", item_id, images.image_problem):
                    out.append(Item(item_id, y, split,
                                    {"image": str(image.relative_to(self.root))},
                                    pre_caption(text, s.max_words)))
        return out, list(CLASSES)
