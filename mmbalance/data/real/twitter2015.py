"""Twitter2015 (multimodal target sentiment, 3 classes), in the layout the BSS code reads.

Raw layout (`--root RAW`):

```
RAW/annotations/train.tsv   tab-separated with a header: `Label` (0 negative, 1 neutral,
RAW/annotations/dev.tsv     2 positive), `String` (the tweet), `ImageID` (file name)
RAW/annotations/test.tsv
RAW/twitter2015_images/<ImageID>
```

The original TomBERT files (github.com/jefferyYu/TomBERT, absa_data/twitter2015/: `#1
Label`, `#2 ImageID`, `#3 String` with the target masked as `$T$`, then the target in a
second `#3 String` column) are read too, as the task is: target-oriented sentiment, so the
input carries its target. The sentence (target put back) is BERT's first segment and the
target its second, `[CLS] sentence [SEP] target [SEP]`, as TomBERT feeds them (`index.parquet`
has a `target` column): two targets of one tweet are two distinct inputs. The BSS files have
no target column (the BSS code classifies the tweet as a whole); they are read as they are.
The files are read one record per line with quoting off, as they were written
(`read_records`).

Prepared (`OUT`, see `writer.py`): `image` (3, 384, 384) uint8 (the BSS code resizes to 384
and only scales to [0, 1]) and `text` (30,) int64 token ids of the cleaned tweet (English
words only, lowercase, no punctuation, at most 20 words, then `[CLS] ... [SEP]` to 30 ids,
the code's `max_length=30`). Twitter2015 has its own dev split, used as val. Backbones:
ResNet50 for the image, BERT for the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmbalance.data.real import images
from mmbalance.data.real.imagetext import ImageTextPreparer, check_image_text_settings
from mmbalance.data.real.preparer import Item
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


def tsv_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number in the file, tab-separated fields) of every non-blank line.

    Quoting is off: each line is one record, as in the original files, so a tweet that
    starts with `"` or holds an unbalanced quote is plain text (a CSV reader would glue
    the next lines onto it). `\r\n` endings and a BOM are accepted.
    """
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: unreadable annotation file: {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text ({exc.reason})") from None
    return [(n, line.removesuffix("\r").split("\t"))
            for n, line in enumerate(text.split("\n"), start=1) if line.strip()]


def _columns(path: Path, header: list[str]) -> tuple[int, int, list[int]]:
    """Positions of the label, the image id and the text column(s) in a header."""
    names = [h.strip() for h in header]
    if {"Label", "String", "ImageID"} <= set(names):
        return names.index("Label"), names.index("ImageID"), [names.index("String")]
    if {"#1 Label", "#2 ImageID", "#3 String"} <= set(names):
        texts = [i for i, h in enumerate(names) if h == "#3 String"]
        return names.index("#1 Label"), names.index("#2 ImageID"), texts
    raise DataError(f"{path}: line 1: expected columns Label, String, ImageID (or TomBERT's "
                    f"#1 Label, #2 ImageID, #3 String); header is {names}")


def read_tsv(path: Path) -> list[tuple[int, int, str, str]]:
    """(line, label, text, image id) of every record of a Twitter2015 TSV; in TomBERT's
    files the text is the sentence with its target put back (`read_records` keeps the
    target apart, as preparation does)."""
    return [(n, y, text if target is None else text.replace("$T$", target), image)
            for n, y, text, target, image in read_records(path)]


def read_records(path: Path) -> list[tuple[int, int, str, str | None, str]]:
    """(line, label, text, target, image id) of every record of a Twitter2015 TSV; the
    target is None in the BSS files (no target column), else TomBERT's target, and the
    text its sentence with the target masked as `$T$`.

    Every line must have the header's number of fields. One exception is exact: where the
    tweet is the only free-text column (the BSS files), a line with more fields has tabs
    inside the tweet, and those fields are joined back into it. In TomBERT's files (the
    sentence and its target are two text columns) such a line is an error.
    """
    lines = tsv_lines(path)
    if not lines:
        raise DataError(f"{path}: empty annotation file (no header line)")
    (_, header), records = lines[0], lines[1:]
    i_label, i_image, i_texts = _columns(path, header)
    width = len(header)
    rows = []
    for n, fields in records:
        extra = len(fields) - width
        if extra > 0 and len(i_texts) == 1:
            t = i_texts[0]
            fields = [*fields[:t], "\t".join(fields[t:t + extra + 1]), *fields[t + extra + 1:]]
        elif extra:
            raise DataError(f"{path}: line {n}: {len(fields)} tab-separated fields, the header "
                            f"has {width} ({', '.join(h.strip() for h in header)})")
        label = fields[i_label].strip()
        try:
            y = int(label)
        except ValueError:
            raise DataError(f"{path}: line {n}: label {label!r} is not an integer") from None
        if not 0 <= y < len(CLASSES):
            raise DataError(f"{path}: line {n}: label {y} outside 0..{len(CLASSES) - 1}")
        image = fields[i_image].strip()
        if not image:
            raise DataError(f"{path}: line {n}: empty image id")
        text, target = fields[i_texts[0]], None
        if len(i_texts) == 2:  # TomBERT: the target, masked as $T$ in the sentence
            target = fields[i_texts[1]].strip()
            if not target:
                raise DataError(f"{path}: line {n}: empty target (second #3 String)")
        rows.append((n, y, text, target, image))
    return rows


def clean_target(target: str, max_words: int) -> str:
    """A target as the tweet's words are cleaned; one that is no English word (a name in
    another script) keeps its own characters, lowercased: a target is never lost."""
    return (pre_caption(english_words(target), max_words)
            or pre_caption(target, max_words) or target.lower())


class Twitter2015Preparer(ImageTextPreparer):
    name = "twitter2015"
    settings_cls = Settings
    has_val = True

    _masked = 0  # BSS-file tweets that hold a `$T$` mask and no target column

    def items(self) -> tuple[list[Item], list[str]]:
        s = self.settings
        ann = self.child(self.root, "annotations")
        if not ann.is_dir():
            raise self.layout_error("annotations/ (train.tsv, dev.tsv, test.tsv) and "
                                    f"{s.image_dir}/")
        out = []
        self._masked = 0
        for split, fname in SPLIT_FILES.items():
            path = self.child(ann, fname)
            for n, y, text, target, image_id in read_records(path):
                self._masked += target is None and "$T$" in text
                item_id = f"{split}:{n}:{image_id}"
                image = self.child(self.child(self.root, s.image_dir), image_id)
                if not self.require(image, "image", item_id, images.image_problem):
                    continue
                if target is not None:  # the sentence whole; the target its own segment
                    text = text.replace("$T$", target)
                    target = clean_target(target, s.max_words)
                clean = pre_caption(english_words(text), s.max_words)
                out.append(Item(item_id, y, split, {"image": str(image.relative_to(self.root))},
                                clean, target))
        return out, list(CLASSES)

    def notes(self) -> list[str]:
        if not self._masked:
            return super().notes()
        return [*super().notes(),
                (f"text: {self._masked} tweets hold a $T$ mask but these files have no target "
                "column, so which entity each label is about is not in the data; TomBERT's "
                "files (#3 String twice) carry it")]
