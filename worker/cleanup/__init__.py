"""Cleanup (phase 3): conservative detectors (sky, power lines, EXIT signs) and crop-wise inpainting."""
