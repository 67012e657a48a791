"""`python -m llmprep.cli ...` (e.g. under `accelerate launch -m llmprep.cli train ...`)."""

from llmprep.cli import main

main()
