"""CLI subcommand modules for the distill side (data, import, info, train, distill)."""
