"""The only code that speaks SQL: the job lifecycle, reads of the app's tables, the operator's side, SQL loading."""
