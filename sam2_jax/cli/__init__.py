"""The `sam2-jax` command line: `commands` (the parser and the image commands), `video`
(track-video), `amg` (automatic masks), `common` (flags every command shares),
`prompt_file` (prompts read from JSON)."""

from sam2_jax.cli.commands import main

__all__ = ["main"]
