"""Text cleaning and tokenisation for the image-text datasets (Twitter2015, Sarcasm).

Cleaning follows the BSS code: Twitter keeps English words only, then both datasets
lowercase, drop `,.'!?"()*#:;~`, turn `-` and `/` into spaces and keep the first
`max_words` words. Token ids are computed once at preparation time, padded to a fixed length
with id 0, so a text modality is an int64 array (L,).

Two tokenizers, both deterministic:

- `WordPieceTokenizer`: BERT's (uncased by default) from a local `vocab.txt` (or a model
  folder holding one) — the ids a pretrained BERT expects. `[CLS] tokens [SEP]`, truncated
  to the length, `[PAD]` after.
- `HashingTokenizer`: the fallback when no vocabulary is given (none can be downloaded
  here). The same basic split (lowercase, accents stripped, punctuation as separate tokens),
  then each word's id is `4 + blake2b(word) mod (vocab_size - 4)`; ids 0-3 are
  `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`. Good for training BERT from scratch; useless with
  pretrained BERT weights, which need the WordPiece ids.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import numpy as np

from mmbalance.errors import DataError

_PUNCT = re.compile(r"([,.'!?\"()*#:;~])")


def english_words(text: str) -> str:
    """Only the words made of ASCII letters, space-separated (the Twitter code's clean_str)."""
    return " ".join(re.findall(r"\b[A-Za-z]+\b", text))


def pre_caption(text: str, max_words: int) -> str:
    """Lowercase, strip punctuation, at most `max_words` words (the BSS code's pre_caption)."""
    text = _PUNCT.sub("", text.lower()).replace("-", " ").replace("/", " ")
    text = text.replace("<person>", "person")
    words = re.sub(r"\s{2,}", " ", text).strip().split(" ")
    return " ".join(words[:max_words])


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    ranges = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
    return any(a <= cp <= b for a, b in ranges)


def basic_tokens(text: str, lowercase: bool = True) -> list[str]:
    """BERT's basic split: drop control characters, isolate CJK characters, lowercase and
    strip accents (uncased), split on whitespace and punctuation."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp in (0, 0xFFFD) or (unicodedata.category(ch).startswith("C")
                                 and ch not in "\t\n\r"):
            continue
        chars.append(f" {ch} " if _is_cjk(cp) else (" " if ch.isspace() else ch))
    text = "".join(chars)
    if lowercase:
        text = "".join(c for c in unicodedata.normalize("NFD", text.lower())
                       if unicodedata.category(c) != "Mn")
    out: list[str] = []
    for word in text.split():
        cur = ""
        for ch in word:
            if _is_punctuation(ch):
                if cur:
                    out.append(cur)
                out.append(ch)
                cur = ""
            else:
                cur += ch
        if cur:
            out.append(cur)
    return out


class WordPieceTokenizer:
    """BERT WordPiece over a local vocabulary file (one token per line, id = line number)."""

    def __init__(self, vocab: dict[str, int], lowercase: bool = True, source: str = ""):
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in vocab:
                raise DataError(f"{source or 'vocab'}: vocabulary lacks {special}")
        self.vocab = vocab
        self.lowercase = lowercase
        self.pad_id, self.unk_id = vocab["[PAD]"], vocab["[UNK]"]
        self.cls_id, self.sep_id = vocab["[CLS]"], vocab["[SEP]"]
        self.vocab_size = max(vocab.values()) + 1
        self.name = f"wordpiece:{source}"

    @classmethod
    def from_path(cls, path: str | Path) -> WordPieceTokenizer:
        """`vocab.txt`, or a model folder holding it (and maybe tokenizer_config.json)."""
        p = Path(path)
        folder = p if p.is_dir() else p.parent
        vocab_file = p / "vocab.txt" if p.is_dir() else p
        from mmbalance.data.real.rawfiles import read_text

        lines = read_text(vocab_file, "tokenizer vocabulary").splitlines()
        lowercase = True
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            import json

            try:
                lowercase = bool(json.loads(cfg.read_text()).get("do_lower_case", True))
            except (OSError, ValueError) as exc:
                raise DataError(f"{cfg}: unreadable tokenizer config: {exc}") from exc
        vocab = {tok.rstrip("\n"): i for i, tok in enumerate(lines) if tok.strip()}
        return cls(vocab, lowercase, str(vocab_file.resolve()))

    def wordpieces(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            ids.append(found)
            start = end
        return ids

    def token_ids(self, text: str) -> list[int]:
        return [i for w in basic_tokens(text, self.lowercase) for i in self.wordpieces(w)]

    def encode(self, text: str, length: int) -> np.ndarray:
        body = self.token_ids(text)
        ids = [self.cls_id, *body[: max(0, length - 2)], self.sep_id][:length]
        out = np.full(length, self.pad_id, np.int64)
        out[: len(ids)] = ids
        return out

    def encode_pair(self, text: str, second: str, length: int) -> np.ndarray:
        """`[CLS] text [SEP] second [SEP]` (BERT's sentence pair), see `pair_ids`."""
        return pair_ids(self, self.token_ids(text), self.token_ids(second), length)


class HashingTokenizer:
    """Word ids by hashing: deterministic across runs and machines, no vocabulary file."""

    pad_id, unk_id, cls_id, sep_id = 0, 1, 2, 3

    def __init__(self, vocab_size: int = 30522):
        if vocab_size < 16:
            raise DataError(f"hashing tokenizer: vocab_size must be >= 16, got {vocab_size}")
        self.vocab_size = vocab_size
        self.name = f"hashing:{vocab_size}"

    def word_id(self, word: str) -> int:
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        return 4 + int.from_bytes(digest, "little") % (self.vocab_size - 4)

    def token_ids(self, text: str) -> list[int]:
        return [self.word_id(w) for w in basic_tokens(text)]

    def encode(self, text: str, length: int) -> np.ndarray:
        body = self.token_ids(text)
        ids = [self.cls_id, *body[: max(0, length - 2)], self.sep_id][:length]
        out = np.zeros(length, np.int64)
        out[: len(ids)] = ids
        return out

    def encode_pair(self, text: str, second: str, length: int) -> np.ndarray:
        """`[CLS] text [SEP] second [SEP]` (BERT's sentence pair), see `pair_ids`."""
        return pair_ids(self, self.token_ids(text), self.token_ids(second), length)


def pair_ids(tok: WordPieceTokenizer | HashingTokenizer, first: list[int], second: list[int],
             length: int) -> np.ndarray:
    """`[CLS] first [SEP] second [SEP]`, padded to `length`. Too long: the first segment is
    cut first: the second (the target of a target-oriented task, TomBERT's segment B) keeps
    up to half of the room, so a long tweet never pushes its target out."""
    room = max(0, length - 3)
    keep_second = second[: max(1, room // 2) if first else room][:room]
    keep_first = first[: room - len(keep_second)]
    ids = [tok.cls_id, *keep_first, tok.sep_id, *keep_second, tok.sep_id][:length]
    out = np.full(length, tok.pad_id, np.int64)
    out[: len(ids)] = ids
    return out


def load_tokenizer(path: str | None, hash_vocab_size: int = 30522
                   ) -> WordPieceTokenizer | HashingTokenizer:
    """WordPiece from a local vocabulary when `path` is given, else the hashing fallback."""
    if path:
        return WordPieceTokenizer.from_path(path)
    return HashingTokenizer(hash_vocab_size)
