"""The photographer's look (phase 1): training from pairs, the histogram method, model files,
caching, metrics, ``.cube`` files."""
