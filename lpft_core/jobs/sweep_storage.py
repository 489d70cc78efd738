"""Where a sweep's Optuna study lives when it is not the stack's Redis: a database that
every worker reaches (PostgreSQL, say), which also keeps finished studies for Optuna's own
tools. Its own module so that the API, which only deletes studies, imports Optuna and
SQLAlchemy alone, not the sweep engine's plotting."""

from __future__ import annotations

import functools

import optuna


@functools.cache
def database_storage(url: str) -> optuna.storages.RDBStorage:
    """The studies in the database at ``url`` (its tables created at the first use). One
    storage per URL and process: each holds a pool of connections, checked before use, so a
    database restart between two asks costs a reconnect rather than a failed trial."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def delete_study(storage: optuna.storages.BaseStorage, name: str) -> None:
    """Remove the study ``name`` from ``storage``, if it was ever created."""
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:  # the sweep was deleted before any worker asked a trial
        pass
