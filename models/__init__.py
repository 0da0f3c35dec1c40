"""Data model, lifecycle state machine and persistence of the integration sync worker.

This package knows nothing of Celery: the scheduler decides what is due from
it, the worker syncs and feeds results back through it.
"""
