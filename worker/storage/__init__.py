"""Where originals are read and deliverables written: ``base`` (the protocol, key and tenant checks),
``local`` (a folder), ``supabase`` (Supabase Storage, retries) with ``tus`` (its resumable uploads),
``factory`` (which one the settings describe)."""
