"""``python -m lmrec.cli``: the ``lmrec`` command, for launchers that start a module (``torchrun -m``)
and for Lightning's DDP launcher, which re-runs ``python -m lmrec.cli ...`` once per extra device."""

from lmrec.cli import main

main()
