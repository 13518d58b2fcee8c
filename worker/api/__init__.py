"""The HTTP API the app's ``AI_ENGINE_URL`` points at (``apelier-worker api``): the old engine's routes,
which here only queue ``processing_jobs`` rows and read them back. Who may call (``auth.py``), what each
route checks, queues and answers (``routes.py``), the ASGI application (``app.py``)."""
