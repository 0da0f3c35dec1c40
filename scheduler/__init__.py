"""What is due and when: provider policies, the claim-and-dispatch tick, the beat schedule.

Knows the data model, never Celery: the worker hands it a `Publisher`.
"""
