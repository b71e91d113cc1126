"""`python -m fusion.cli …` (and `torchrun -m fusion.cli train …`) = `kgrec …`."""

from fusion.cli import main

main()
