"""Design-space exploration: cost models, spaces, backends and the `explore` command."""
