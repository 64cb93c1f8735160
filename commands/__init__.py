"""The command layer: ``lmcot`` on the command line (one module per command, the Typer app in ``cli``).

Commands parse, call one library function, print and write their files; nothing below imports them."""
