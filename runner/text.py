"""WikiText-2 (``wikitext-2-raw-v1``) through Hugging Face ``datasets``, tokenised with GPT-2's
tokenizer and cut into non-overlapping blocks of ``data.block_size`` tokens; perplexity is measured
on the official test split.

Where the files come from, in order: ``<data.root>/wikitext-2-raw-v1/{train,validation,test}-00000-of-00001.parquet``
(the layout of the hub's ``Salesforce/wikitext`` repository), then the hub itself (cached by
``datasets``) when ``data.download=true``. The tokenizer: ``data.tokenizer`` is a directory holding
GPT-2's tokenizer files (``vocab.json`` and ``merges.txt``, or ``tokenizer.json``) or a hub name
(default ``gpt2``), looked for first as ``<data.root>/<name>``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from .data import Splits, blocks, cache_dir
from .errors import ConfigError

CONFIG = "wikitext-2-raw-v1"
HUB = "Salesforce/wikitext"
SPLITS = ("train", "validation", "test")


def local_files(root: Path) -> dict:
    return {s: str(root / CONFIG / f"{s}-00000-of-00001.parquet") for s in SPLITS}


def load_text(download: bool, root: Path):
    """The ``datasets.DatasetDict`` of WikiText-2: the local parquet copy, else the hub."""
    from datasets import load_dataset

    files = local_files(root)
    if all(Path(f).is_file() for f in files.values()):
        return load_dataset("parquet", data_files=files)
    failure = "data.download=false, so the hub was not tried"
    if download:
        try:
            return load_dataset(HUB, CONFIG)
        except (OSError, ValueError) as e:  # offline, no cached copy, a proxy refusing (OSError), a bad config name
            failure = f"loading {HUB} ({CONFIG}) from the Hugging Face hub failed ({type(e).__name__}: {str(e)[:200]})"
    raise ConfigError(
        f"data set wikitext2 was not found: echo-run looked for {root / CONFIG}/"
        "{train,validation,test}-00000-of-00001.parquet and " + failure + ". To fix it, on a machine "
        f"with a network run `python -c \"from datasets import load_dataset; d = load_dataset('{HUB}', "
        f"'{CONFIG}'); [d[s].to_parquet('{root / CONFIG}/' + s + '-00000-of-00001.parquet') for s in d]\"` "
        f"(or `huggingface-cli download {HUB} --repo-type dataset --include '{CONFIG}/*' --local-dir {root}`) "
        f"and copy {root / CONFIG} here, or point data.root=DIR at a directory that holds {CONFIG}/.")


def load_tokenizer(name: str, download: bool, root: Path):
    """GPT-2's byte-level BPE tokenizer (``GPT2TokenizerFast``) from a directory or the hub."""
    from transformers import GPT2TokenizerFast

    here = Path(name) if Path(name).is_dir() else root / name
    where = str(here) if here.is_dir() else name
    try:
        tok = GPT2TokenizerFast.from_pretrained(where, local_files_only=not download or here.is_dir())
        if len(tok) <= 256:  # transformers returns an empty tokenizer, not an error, when it finds no files
            raise FileNotFoundError(f"no tokenizer files found for {where!r}")
    # Missing files and the hub raise OSError; a damaged tokenizer file the tokenizers library's bare Exception.
    except Exception as e:  # tokenizers (Rust) raises the Exception type itself: no narrower class catches it
        raise ConfigError(
            f"the tokenizer data.tokenizer={name!r} for data set wikitext2 could not be loaded: echo-run "
            f"looked for the directory {name!r} and {root / name}, then the Hugging Face hub/cache "
            f"({type(e).__name__}: {str(e)[:200]}). To fix it, on a machine with a network run "
            f"`python -c \"from transformers import GPT2TokenizerFast; GPT2TokenizerFast.from_pretrained("
            f"'gpt2').save_pretrained('{root / 'gpt2'}')\"` and copy that directory here, or set "
            "data.tokenizer=DIR to a directory holding vocab.json and merges.txt.") from None
    tok.model_max_length = 1 << 30  # we cut the token stream into blocks ourselves
    return tok


def token_ids(texts, tok) -> torch.Tensor:
    """The lines of a split, tokenised line by line (as Hugging Face's run_clm does) and
    concatenated into one stream."""
    ids = tok(list(texts), add_special_tokens=False)["input_ids"]
    return torch.tensor([i for line in ids for i in line], dtype=torch.long)


def wikitext2(root: Optional[str] = None, download: bool = True, block_size: int = 256,
              tokenizer: str = "gpt2") -> Splits:
    """WikiText-2 (raw): about 2.4M training and 0.28M test GPT-2 tokens of Wikipedia articles."""
    root = cache_dir(root)
    text = load_text(download, root)
    tok = load_tokenizer(tokenizer, download, root)
    train = blocks(token_ids(text["train"]["text"], tok), block_size)
    test = blocks(token_ids(text["test"]["text"], tok), block_size)
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(f"data.block_size={block_size} is longer than a split of wikitext2 in "
                          f"{root}: choose a smaller block size.")
    return Splits(train, test, "language",
                  {"vocab_size": len(tok), "block_size": block_size, "name": "wikitext2"})

