"""Neural and classical models, loaded once at start and kept warm (see ``bundle.py``)."""
