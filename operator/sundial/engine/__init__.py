"""The engine: one scheduler loop for all CronConfigs, attempts, history, status and events.

Depends on models, scheduling, leases, store and jobs; knows nothing of kopf.
"""
