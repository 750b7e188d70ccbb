"""Schema migrations, shipped inside the package as ``aggregator.sql`` (see pyproject.toml)."""
