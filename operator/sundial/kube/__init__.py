"""The Kubernetes API as sundial uses it: status patches, Events, Secrets, Jobs (``client``)."""

from sundial.kube.client import ApiError, Conflict, Expired, Gone, Kube, load_client

__all__ = ["ApiError", "Conflict", "Expired", "Gone", "Kube", "load_client"]
