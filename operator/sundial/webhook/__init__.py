"""The validating admission webhook for CronConfigs, without kopf.

``review``: the admission decision (``sundial.validation`` plus the webhook's own rules);
``certs``: self-signed CA and serving certificates (pure, "now" is an argument);
``keeper``: those certificates as files, rotated before they expire;
``inject``: the CA bundle written into a ValidatingWebhookConfiguration created by the chart.
The kopf glue (server, handler registration) is ``sundial.handlers.admission``.
"""

WEBHOOK_ID = "validate-cronconfigs"
"""The kopf handler id, hence the URL path the API server calls: ``/validate-cronconfigs``."""
