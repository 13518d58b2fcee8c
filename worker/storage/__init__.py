"""Where originals are read and deliverables written: local folder or Supabase Storage (with TUS), key checks."""
