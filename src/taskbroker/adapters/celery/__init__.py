"""The Celery adapter: app configuration, the broker port, one Celery task per task type, and
the filesystem transport with atomic writes (embedded mode)."""
