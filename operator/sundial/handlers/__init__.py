"""kopf only, and thin: watch events are handed to the engine. No SQL, Redis or job code here.

Only event handlers are used: they keep no per-object progress annotations, which several
active replicas would otherwise fight over, and they need no finalizers (history outlives objects).
"""
