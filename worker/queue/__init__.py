"""The only code that speaks SQL: SQL loading, the connection seam, the job lifecycle, reads of the app's
tables, the operator's side (migrations, enqueue, status), LISTEN, and an in-memory double for tests."""
