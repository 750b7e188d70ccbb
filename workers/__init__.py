"""arq workers. Run one queue's worker with ``arq workers.poll.WorkerSettings`` or
``arq workers.store.WorkerSettings``; ``aggregator run`` runs both in one process."""
