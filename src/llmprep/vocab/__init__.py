"""Vocabulary extension: train a SentencePiece vocabulary, merge it into a base tokenizer, compare
tokenizers, resize a model's embeddings to the merged tokenizer, prune to a corpus."""

from llmprep.vocab.compare import compare, render_table
from llmprep.vocab.merge import merge_vocab
from llmprep.vocab.prune import prune
from llmprep.vocab.resize import resize
from llmprep.vocab.train import train_vocab

__all__ = ["compare", "merge_vocab", "prune", "render_table", "resize", "train_vocab"]
