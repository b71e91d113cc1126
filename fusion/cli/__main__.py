"""`python -m fusion.cli` runs `kgrec` (also what `torchrun -m fusion.cli` starts)."""

from fusion.cli import main

main()
