"""The photographer's look (phase 1): training from pairs, the histogram method, Lightroom presets,
model files, caching, metrics, ``.cube`` files."""
