"""Names shared by every stage."""

# Label value that torch's CrossEntropyLoss ignores; every masked label uses this one name.
IGNORE_INDEX = -100

# The embedded default tokenizer (SmolLM2-135M-Instruct's, shipped in llmprep/assets/smollm2).
DEFAULT_TOKENIZER = "smollm2"
DEFAULT_MAX_LENGTH = 2048
