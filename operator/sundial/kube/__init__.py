"""The Kubernetes API as sundial uses it: status patches, Events, Secrets (``client``)."""

from sundial.kube.client import Conflict, Gone, Kube, load_client

__all__ = ["Conflict", "Gone", "Kube", "load_client"]
