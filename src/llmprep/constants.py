"""Names shared by every stage."""

# Label value that torch's CrossEntropyLoss ignores; every masked label uses this one name.
IGNORE_INDEX = -100

# The embedded default tokenizer (SmolLM2-135M-Instruct's, shipped in llmprep/assets/smollm2).
DEFAULT_TOKENIZER = "smollm2"
DEFAULT_MAX_LENGTH = 2048

# prepare's default number of processes working shards (one per core, at most this many): past it the main
# process's share of the work (ordering, deduplication, assembling) bounds the run.
MAX_PROCESSES = 4
