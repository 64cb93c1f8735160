"""``python -m lmcot ...`` runs the ``lmcot`` command (also what ``torchrun -m lmcot`` /
``accelerate launch -m lmcot`` start)."""

from lmcot.commands.cli import main

if __name__ == "__main__":
    main()
