"""``python -m aggregator`` and the ``aggregator`` command.

The command's entry point is this small module, not ``aggregator.app.cli``: a spawned
parse process re-imports the entry point's module, and the CLI would drag aiohttp,
arq, asyncpg and click into every one of them (about 32 MB each).
"""


def run() -> None:
    from aggregator.app.cli import main

    main()


if __name__ == "__main__":
    run()
