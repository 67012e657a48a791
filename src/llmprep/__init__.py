"""llmprep: raw records to correct, training-ready tokens for LLM fine-tuning."""

from llmprep.constants import IGNORE_INDEX

__all__ = ["IGNORE_INDEX"]
__version__ = "0.1.0"
