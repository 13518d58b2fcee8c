"""What a claimed job does: a gallery or restyle through the pipeline, a style training, progress rows."""
