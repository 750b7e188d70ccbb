# syntax=docker/dockerfile:1
#
# One image for the daemon and the standalone arq workers:
#   docker run IMAGE                                  -> aggregator run
#   docker run IMAGE feeds import /feeds/list.toml    -> any aggregator subcommand
#   docker run --entrypoint arq IMAGE workers.poll.WorkerSettings
# Configuration comes from AGGREGATOR_* environment variables
# (AGGREGATOR_DATABASE_URL and AGGREGATOR_REDIS_URL are required).

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, unprivileged user; its home doubles as the working directory.
RUN groupadd --system --gid 10001 aggregator \
 && useradd --system --uid 10001 --gid aggregator \
        --home-dir /var/lib/aggregator --create-home \
        --shell /usr/sbin/nologin aggregator

# Only what the package needs: dependency wheels exist for this platform
# (asyncpg, lxml, nh3), so no compiler is installed. README.md* is optional.
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY aggregator ./aggregator
COPY sql ./sql
COPY workers ./workers
RUN pip install . \
 && rm -rf /src

USER aggregator:aggregator
WORKDIR /var/lib/aggregator

# Cheap liveness probe: the installed package imports. Compose overrides it.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import aggregator"]

# The daemon and arq both stop cleanly on SIGTERM (docker stop's default).
STOPSIGNAL SIGTERM

ENTRYPOINT ["aggregator"]
CMD ["run"]
