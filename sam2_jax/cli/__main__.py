"""`python -m sam2_jax.cli` is the `sam2-jax` command."""

from sam2_jax.cli.commands import main

main()
