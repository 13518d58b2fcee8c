"""Faces (phases 0 and 2): detection, FFHQ alignment, which restorer runs, classical skin smoothing, paste-back."""
